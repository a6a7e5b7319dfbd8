"""install.sh checks each service through its socket after starting the sockets (issue 19):
a unit that cannot start fails the install with the unit's reason and the fix in one line,
instead of "done: sockets listening". On a real systemd user manager (tests/sandbox.py)."""

from __future__ import annotations

import pytest

from sandbox import install

pytestmark = pytest.mark.systemd


def test_a_unit_that_cannot_exec_fails_the_install_with_its_reason_and_fix(user_manager):
    sd = user_manager
    # What a venv under a hidden home looks like to the units: ProtectHome=yes hides the
    # sandbox's /home, so systemd cannot execute the venv's python (203/EXEC).
    hidden = sd.home / ".config/systemd/user/trading-.service.d/hide-home.conf"
    hidden.parent.mkdir(parents=True, exist_ok=True)
    hidden.write_text("[Service]\nProtectHome=yes\n")
    broken = sd.run(*_install_argv(sd), check=False, timeout=600)
    lines = [l for l in broken.stderr.splitlines() if l.startswith("install: error:")]
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert "done: sockets listening" not in broken.stdout
    assert lines and all("203/EXEC" in l and "fix:" in l for l in lines), broken.stderr
    assert any(l.startswith("install: error: market-data cannot start") for l in lines)

    hidden.unlink()
    sd.systemctl("daemon-reload")  # as an admin does after removing a drop-in
    fixed = install(sd, timeout=600)
    assert "every service answered health_check through its socket" in fixed.stdout
    assert sd.trading("call", "market-data", "health_check").returncode == 0


def _install_argv(sd):
    """install(sd)'s command line, run here with check=False (the failure is the point)."""
    import sys
    from pathlib import Path

    from sandbox import INSTALL_SH

    quiet = sd.unit_dir / "trading-.timer.d/sandbox-quiet.conf"
    quiet.parent.mkdir(parents=True, exist_ok=True)
    quiet.write_text("[Timer]\nOnCalendar=\nOnCalendar=2099-01-01 00:00:00 UTC\n"
                     "Persistent=false\n")
    return [str(INSTALL_SH), "--user", "--deps-from", str(Path(sys.prefix).resolve())]
