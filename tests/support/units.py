"""The unit files as ``install.sh --render-units`` writes them, for tests that read them
without installing anything (conftest's ``rendered`` fixture holds one rendering per mode),
and what ``systemd-analyze security`` makes of one."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

INSTALL_SH = Path(__file__).resolve().parents[2] / "install.sh"


def render_units(mode: str, dest: Path, venv: Path | str = sys.prefix, *,
                 options: Sequence[str] = ()) -> Path:
    """The units a ``mode`` (``system`` or ``user``) install of ``venv`` would write, in
    ``dest`` (returned); ``options`` go before ``--render-units`` (e.g. ``--web-listen``)."""
    subprocess.run([str(INSTALL_SH), *options, "--render-units", mode, str(dest), str(venv)],
                   check=True)
    return dest


def exposure(unit: Path, env: dict[str, str] | None = None) -> float:
    """The overall exposure level ``systemd-analyze security --offline=true`` gives a unit
    file (0 to 10, lower is safer)."""
    r = subprocess.run(["systemd-analyze", "security", "--offline=true", str(unit)],
                       capture_output=True, text=True, env=env)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", r.stdout)
    assert m, r.stdout + r.stderr
    return float(m.group(1))
