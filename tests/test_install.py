"""install.sh where systemd is not running (a container, a CI VM): the embedded default.

It must still install the package and the unit files, say in one line that systemd is not
running, and leave a ``trading`` command that runs the handlers in-process. A second run says
nothing changed; ``--uninstall`` takes it all away again. (The install into a real manager is
tests/test_systemd.py.)
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
INSTALL_SH = REPO / "install.sh"

pytestmark = pytest.mark.slow


@pytest.fixture
def home(tmp_path) -> dict[str, str]:
    """An environment with a private HOME and a runtime dir where no manager listens."""
    (tmp_path / "run").mkdir(mode=0o700)
    env = {"HOME": str(tmp_path / "home"), "XDG_RUNTIME_DIR": str(tmp_path / "run"),
           "PATH": f"{tmp_path}/home/.local/bin:/usr/local/bin:/usr/bin:/bin",
           "LANG": "C.UTF-8", "TRADING_SOURCE": "sample", "TRADING_NEWS_SOURCE": "sample",
           # root's default socket dir is /run/trading; look where this install would be
           "TRADING_RUNTIME_DIR": str(tmp_path / "run" / "trading")}
    return env


def sh(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(INSTALL_SH), *args], env=env, capture_output=True, text=True,
                          timeout=300, check=check)


def test_without_systemd_it_installs_says_so_and_commands_run_in_process(home):
    first = sh(home, "--user", "--deps-from", sys.prefix)
    out = first.stdout
    assert ("install: systemd is not running here: installed the package and the unit files; "
            "`trading` commands run the handlers in-process") in out.splitlines(), out
    units = Path(home["HOME"]) / ".config/systemd/user"
    assert (units / "trading.target").exists()
    assert (units / "trading-market-data.socket").exists()
    venv = Path(home["HOME"]) / ".local/share/trading/venv"
    assert f"ExecStart={venv}/bin/trading-market-data" in \
        (units / "trading-market-data.service").read_text()
    for name in ("market-data", "sentiment", "prediction", "training", "web"):  # the units run
        assert os.access(venv / "bin" / f"trading-{name}", os.X_OK), name

    trading = str(Path(home["HOME"]) / ".local/bin/trading")
    r = subprocess.run([trading, "call", "market-data", "health_check"], env=home,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["pid"] != os.getpid()
    assert "running the handler in-process" in r.stderr
    status = subprocess.run([trading, "status"], env=home, capture_output=True, text=True,
                            timeout=60)
    assert status.returncode == 0
    assert status.stdout.startswith("systemd is not running here")

    again = sh(home, "--user", "--deps-from", sys.prefix).stdout
    assert "nothing changed" in again, again

    gone = sh(home, "--user", "--uninstall").stdout
    assert "removed" in gone
    assert not (units / "trading.target").exists()
    assert not venv.exists()
    assert "nothing to uninstall" in sh(home, "--user", "--uninstall").stdout


@pytest.fixture
def listener():
    """A plain listener on a free loopback port: what RStudio Server is on 8787."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    yield s
    s.close()


def holder() -> str:
    """How install.sh names the listener's owner, this process: ss's name for it and its pid."""
    return f"{Path('/proc/self/comm').read_text().strip()} (pid {os.getpid()})"


def test_a_taken_address_asked_for_fails_in_one_line_before_anything_changes(home, listener):
    taken = f"127.0.0.1:{listener.getsockname()[1]}"
    for how, env in (("--web-listen", home), ("TRADING_WEB_LISTEN",
                                              {**home, "TRADING_WEB_LISTEN": taken})):
        args = ["--web-listen", taken] if how == "--web-listen" else []
        r = sh(env, "--user", "--deps-from", sys.prefix, *args, check=False)
        assert (r.returncode, r.stdout) == (1, ""), r.stdout + r.stderr
        [line] = r.stderr.splitlines()
        assert re.fullmatch(
            rf"install: error: the dashboard's address {re.escape(taken)} \({how}\) is taken by "
            rf"{re.escape(holder())}; nothing was changed; choose another: \./install\.sh --user "
            r"--web-listen 127\.0\.0\.1:\d+ \(free now\), or a Unix socket path", line), line
        assert not Path(home["HOME"]).exists()


def test_by_default_the_dashboard_is_a_unix_socket_only_its_owner_can_open(home):
    out = sh(home, "--user", "--deps-from", sys.prefix).stdout
    path = Path(home["XDG_RUNTIME_DIR"]) / "trading" / "web.sock"
    socket_unit = Path(home["HOME"]) / ".config/systemd/user/trading-web.socket"
    assert "ListenStream=%t/trading/web.sock\n" in socket_unit.read_text()
    record = Path(home["HOME"]) / ".local/share/trading/venv/trading-install"
    assert "web_listen=%t/trading/web.sock" in record.read_text().splitlines()
    assert out.splitlines()[-2:] == [
        ("install: only you can open the dashboard (its socket is in your runtime directory, "
         "mode 0700)"),
        f"install: dashboard: trading-web.socket listens on {path} once systemd runs it"], out


def test_a_chosen_port_is_said_to_be_open_to_everyone_and_kept_moved_when_taken(home):
    """The explicit TCP choice: the install says every local account can open it; a re-run
    (an upgrade) keeps it, and when something else took the port meanwhile, moves to the next
    free one above it, says so first, and later runs keep that."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        chosen = probe.getsockname()[1]
    out = sh(home, "--user", "--deps-from", sys.prefix, "--web-listen",
             f"127.0.0.1:{chosen}").stdout
    assert (f"install: warning: every local account can open the dashboard on "
            f"127.0.0.1:{chosen} (a loopback port cannot tell users apart): set web.token to "
            "ask for a login, or keep it to yourself: ./install.sh --user --web-listen "
            "'%t/trading/web.sock'") in out.splitlines(), out

    taken = socket.socket()  # what RStudio Server is on 8787
    taken.bind(("127.0.0.1", chosen))
    taken.listen()
    try:
        out = sh(home, "--user", "--deps-from", sys.prefix).stdout
    finally:
        taken.close()
    said = re.match(rf"install: 127\.0\.0\.1:{chosen} \(the last install's choice\) is taken "
                    rf"by {re.escape(holder())}; the dashboard listens on 127\.0\.0\.1:(\d+) "
                    r"instead; --web-listen to choose\n", out)
    assert said, out  # the first line, before anything else happened
    new = int(said.group(1))
    assert chosen < new <= chosen + 50
    socket_unit = Path(home["HOME"]) / ".config/systemd/user/trading-web.socket"
    assert f"ListenStream=127.0.0.1:{new}\n" in socket_unit.read_text()
    record = Path(home["HOME"]) / ".local/share/trading/venv/trading-install"
    assert f"web_listen=127.0.0.1:{new}" in record.read_text().splitlines()
    assert out.splitlines()[-1] == \
        f"install: dashboard: trading-web.socket listens on 127.0.0.1:{new} once systemd runs it"

    # The chosen port is free again: the recorded choice still wins.
    again = sh(home, "--user", "--deps-from", sys.prefix).stdout
    if "sources changed since the last install" in again:
        again = sh(home, "--user", "--deps-from", sys.prefix).stdout  # the checkout was edited
    assert "nothing changed" in again and "is taken" not in again, again
    assert f"ListenStream=127.0.0.1:{new}\n" in socket_unit.read_text()


def test_bad_options_are_one_line_and_exit_2(home):
    r = sh(home, "--bogus", check=False)
    assert r.returncode == 2
    assert "unknown option: --bogus" in r.stdout
    r = sh(home, "--purge", check=False)
    assert r.returncode == 1 and "--purge goes with --uninstall" in r.stderr
