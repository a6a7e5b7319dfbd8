"""The docs' deterministic figures (the marked blocks in README.md and docs/) are what their
quoted commands give today."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_readme_figures_match_their_commands():
    # A child process: the script changes directory and environment, which a test must not.
    # It reruns the backtest and the replay with report (about 10 s); on drift it names each
    # figure and the file that quotes it, and `bench/readme_figures.py --write` brings the
    # blocks up to date.
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "readme_figures.py"), "--check"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
