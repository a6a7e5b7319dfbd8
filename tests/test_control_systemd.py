"""``trading start``, ``stop`` and ``restart``: on a real systemd, and where there is none.

On the sandbox's real user manager (tests/sandbox.py, marked ``systemd``): stop leaves no
socket and no handler, and other commands then say the service is stopped instead of running
it in-process; start brings the sockets back with no process; restart in the middle of a
stream of requests loses none, and the next answer comes from a new process; ``--json``
shapes and exit codes. The sandbox tests share one manager and run in file order.

Without the sandbox: no systemd at all (exit 5), units installed but their manager not
running (exit 5), and a manager that refuses the change (exit 6, with the sudo command). The
refusal comes from a stand-in ``systemctl`` on PATH: the sandbox's manager is root's own and
never refuses, and polkit is not there to ask.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import wait_for
from support.wire import rpc
from sandbox import UserManager, sock
from typer.testing import CliRunner

from trading import config
from trading.cli.main import app
from trading.handlers import HTTP_SERVICES
from trading.handlers import SOCKET_SERVICES as SERVICES  # the dashboard's too
from trading.ops import systemd

sandboxed = [pytest.mark.systemd, pytest.mark.slow]
TIMERS = ["trading-outcomes.timer", "trading-predict.timer", "trading-train.timer"]


def run(*args: str):
    return CliRunner().invoke(app, list(args))


# -- where systemd cannot do it ----------------------------------------------------------------

@pytest.fixture
def no_manager(monkeypatch, tmp_path):
    """A HOME without an install, no booted system manager, no user manager listening."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setattr(systemd, "BOOTED", tmp_path / "not-booted")
    monkeypatch.setattr(systemd, "SYSTEM_UNIT_DIR", tmp_path / "etc-systemd-system")
    return tmp_path


@pytest.mark.parametrize("verb", ["start", "stop", "restart"])
def test_no_systemd_is_exit_5_and_one_line(no_manager, verb):
    for args in ([verb], [verb, "prediction", "--json"]):
        r = run(*args)
        assert r.exit_code == 5, r.output
        assert r.stdout == ""
        assert r.stderr == ("trading: error: systemd is not running here: start, stop and "
                            "restart need it (`trading` commands run the handlers in-process)\n")


def test_units_installed_but_no_manager_is_exit_5_and_says_so(no_manager):
    units = no_manager / ".config/systemd/user"
    units.mkdir(parents=True)
    (units / "trading.target").write_text("[Unit]\n")
    r = run("stop")
    assert r.exit_code == 5
    assert "installed but their systemd manager is not running" in r.stderr
    assert "enable-linger" in r.stderr


def test_an_unknown_service_is_a_usage_error(no_manager):
    r = run("stop", "predictions")
    assert r.exit_code == 2
    assert "unknown service 'predictions'" in r.stderr


# A stand-in for systemctl (the edge to the manager): answers `show` and `list-unit-files`
# from a JSON file of unit states, and applies start/stop to it, or refuses as systemd 252
# does without polkit's blessing when FAKE_SYSTEMCTL_DENY is set.
FAKE_SYSTEMCTL = r'''
import json, os, sys
state_file = os.environ["FAKE_SYSTEMCTL_STATE"]
units = json.load(open(state_file))
args = [a for a in sys.argv[1:] if a not in ("--user", "--no-ask-password", "--", "--value",
                                              "--no-legend", "--plain")]
with open(state_file + ".log", "a") as log:
    log.write(" ".join(sys.argv[1:]) + "\n")
verb, rest = args[0], args[1:]
if verb == "show":
    props = [a.split("=", 1)[1] for a in rest if a.startswith("--property=")]
    names = [a for a in rest if not a.startswith("--")]
    if props == ["Version"]:
        print("252")
        sys.exit(0)
    for name in names:
        u = {"Id": name, "LoadState": "not-found", "ActiveState": "inactive", "SubState": "dead",
             "MainPID": "0", "NeedDaemonReload": "no", **units.get(name, {})}
        print("\n".join(f"{p}={u.get(p, '')}" for p in props) + "\n")
elif verb == "list-unit-files":
    print("\n".join(f"{u} enabled enabled" for u in sorted(units) if u.endswith(".timer")))
elif os.environ.get("FAKE_SYSTEMCTL_DENY"):
    print(f"Failed to {verb} {rest[0]}: Access denied", file=sys.stderr)
    print(f"See system logs and 'systemctl status {rest[0]}' for details.", file=sys.stderr)
    sys.exit(4)
else:
    for name in rest:
        up = verb == "start"
        units[name].update(ActiveState="active" if up else "inactive",
                           SubState="listening" if up else "dead", MainPID="0")
    json.dump(units, open(state_file, "w"))
'''


@pytest.fixture
def fake_manager(no_manager, monkeypatch):
    """A system install whose manager answers through the stand-in systemctl."""
    bin_dir = no_manager / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "systemctl"
    fake.write_text(f"#!{sys.executable}\n{FAKE_SYSTEMCTL}")
    fake.chmod(0o755)
    state = no_manager / "units.json"
    units = {}
    for name in SERVICES:
        units[f"trading-{name}.socket"] = {"LoadState": "loaded", "ActiveState": "active",
                                           "SubState": "listening"}
        units[f"trading-{name}.service"] = {"LoadState": "loaded", "ActiveState": "inactive",
                                            "SubState": "dead"}
    units["trading-prediction.service"].update(ActiveState="active", SubState="running",
                                               MainPID="4242")
    for timer in TIMERS:
        units[timer] = {"LoadState": "loaded", "ActiveState": "active", "SubState": "waiting"}
    state.write_text(json.dumps(units))
    (no_manager / "etc-systemd-system").mkdir()
    (no_manager / "etc-systemd-system/trading.target").write_text("[Unit]\n")
    (no_manager / "not-booted").mkdir()  # now it is: the system manager "runs"
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SYSTEMCTL_STATE", str(state))
    return state


def test_a_refused_change_is_exit_6_with_the_sudo_command(fake_manager, monkeypatch):
    monkeypatch.setenv("FAKE_SYSTEMCTL_DENY", "1")
    r = run("stop", "prediction", "market-data")
    assert r.exit_code == 6, r.output
    assert r.stdout == ""
    assert r.stderr.splitlines() == [
        "trading: error: the system manager refused: Failed to stop "
        "trading-prediction.socket: Access denied; run: sudo trading stop prediction "
        "market-data"]
    # Never a password prompt: systemctl was told not to ask.
    assert "--no-ask-password stop" in Path(f"{fake_manager}.log").read_text()


def test_stop_and_start_change_only_what_differs_one_line_each(fake_manager):
    r = run("stop", "prediction")
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines() == [
        "stopped trading-prediction.socket: nothing answers until `trading start`",
        "stopped trading-prediction.service (pid 4242)"]
    again = json.loads(run("stop", "prediction", "--json").stdout)
    assert again == {"action": "stop", "systemd": "system", "services": ["prediction"],
                     "changed": []}
    assert (run("stop", "prediction").stdout
            == "nothing to stop: no socket listens and no handler runs\n")
    started = json.loads(run("start", "--json").stdout)
    assert [c["unit"] for c in started["changed"]] == ["trading-prediction.socket"]
    assert started["changed"][0] == {"unit": "trading-prediction.socket", "change": "started",
                                     "before": "inactive/dead", "after": "active/listening",
                                     "pid": None}


def test_a_stopped_service_is_not_run_in_process_unless_asked(fake_manager, monkeypatch):
    # The stand-in manager holds a user install here, its prediction socket stopped.
    home = fake_manager.parent
    (home / ".config/systemd/user").mkdir(parents=True)
    (home / ".config/systemd/user/trading.target").write_text("[Unit]\n")
    assert run("stop", "market-data").exit_code == 0
    r = run("call", "market-data", "health_check")
    assert r.exit_code == 3, r.output
    assert r.stderr == ("trading: error: market-data is stopped (trading-market-data.socket is "
                        "not listening in the user manager): run `trading start market-data`, "
                        "or `trading --in-process ...` to run it inside the command\n")
    asked = run("--in-process", "call", "market-data", "health_check")
    assert asked.exit_code == 0, asked.output
    assert json.loads(asked.stdout)["pid"] == os.getpid()
    # A service whose socket listens (the file is just not where this client looks) still
    # runs in-process, with the usual note.
    ok = run("call", "sentiment", "health_check")
    assert ok.exit_code == 0 and "running the handler in-process" in ok.stderr


# -- on a real systemd -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sd(installed: UserManager) -> UserManager:
    installed.set_idle_exit(60)  # a handler started by a test stays until stopped
    return installed


def active(sd: UserManager, unit: str) -> str:
    return sd.show(unit, "ActiveState")["ActiveState"]


@pytest.mark.systemd
@pytest.mark.slow
def test_stop_leaves_no_socket_and_no_handler(sd):
    pid = rpc(sock(sd, "market-data"), "health_check")["result"]["pid"]
    assert sd.handler_pids("market-data") == [pid]
    r = sd.trading("stop", "--json")
    report = json.loads(r.stdout)
    assert (report["action"], report["systemd"], report["services"]) == (
        "stop", "user", list(SERVICES))
    changed = {c["unit"]: c for c in report["changed"]}
    assert set(changed) == ({f"trading-{n}.socket" for n in SERVICES} | set(TIMERS)
                            | {"trading-market-data.service"})
    assert changed["trading-market-data.service"]["pid"] == pid
    assert all(c["change"] == "stopped" and c["after"].startswith("inactive")
               for c in changed.values())
    listing = sd.systemctl("list-sockets").stdout
    for name in SERVICES:
        assert name in HTTP_SERVICES or not sock(sd, name).exists()  # web listens on TCP
        assert f"trading-{name}.socket" not in listing
        assert active(sd, f"trading-{name}.socket") == "inactive"
        assert active(sd, f"trading-{name}.service") == "inactive"
        assert sd.handler_pids(name) == []
    again = sd.trading("stop")
    assert again.stdout == "nothing to stop: no socket listens and no handler runs\n"


@pytest.mark.systemd
@pytest.mark.slow
def test_a_stopped_service_says_so_instead_of_running_in_process(sd):
    trading = str(sd.home / ".local/bin/trading")
    r = sd.run(trading, "call", "market-data", "health_check", check=False,
               env={"TRADING_IN_PROCESS": "auto"})
    assert r.returncode == 3, r.stdout + r.stderr
    assert r.stderr.startswith("trading: error: market-data is stopped "
                               "(trading-market-data.socket is not listening in the user "
                               "manager): run `trading start market-data`")
    asked = sd.run(trading, "--in-process", "call", "market-data", "health_check",
                   env={"TRADING_IN_PROCESS": "auto"})
    assert json.loads(asked.stdout)["status"] == "ok"
    status = sd.trading("status", "--json", check=False)
    assert status.returncode == 1
    assert {row["socket"] for row in json.loads(status.stdout)["services"]} == {
        "stopped; run trading start"}


@pytest.mark.systemd
@pytest.mark.slow
def test_start_brings_the_sockets_back_with_no_process(sd):
    r = sd.trading("start")
    lines = r.stdout.splitlines()
    assert lines == ([f"started trading-{n}.socket: listening, the handler starts on the "
                      "first request" for n in SERVICES] + [f"started {t}" for t in TIMERS])
    for name in SERVICES:
        assert name in HTTP_SERVICES or sock(sd, name).is_socket()  # web listens on TCP
        assert active(sd, f"trading-{name}.socket") == "active"
        assert active(sd, f"trading-{name}.service") == "inactive"
        assert sd.handler_pids(name) == []
    for t in TIMERS:
        assert active(sd, t) == "active"
    assert json.loads(sd.trading("start", "--json").stdout)["changed"] == []
    assert sd.trading("start").stdout == "nothing to start: every socket listens already\n"


class Stream:
    """Client threads calling health_check in a loop, all through the project's client: some
    on a new connection per call (as a ``trading`` command), some on one kept open (the
    client's default). A connection the old process accepted just before the stop, whose
    request came after it shut reads, gets EPIPE on send and is sent again, as the client
    does (README, "The protocol"); a raw socket here counted that as lost once in CI (its
    thread held off the GIL between connect and send)."""

    def __init__(self, sd: UserManager, raw: int = 3, kept: int = 3) -> None:
        from trading.runtime.client import Client

        self.path = sock(sd, "market-data")
        cfg = config.load(environ={"TRADING_RUNTIME_DIR": str(self.path.parent)})
        self.answers: list[tuple[float, int]] = []
        self.errors: list[str] = []
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.clients = ([Client(cfg, in_process="never", timeout=30, keep_connections=False)
                         for _ in range(raw)]
                        + [Client(cfg, in_process="never", timeout=30) for _ in range(kept)])
        self.threads = [threading.Thread(target=self._calls, args=(c,)) for c in self.clients]

    def _record(self, call) -> None:
        while not self.done.is_set():
            try:
                pid = call()
            except Exception as exc:  # noqa: BLE001  (every failure is a lost request)
                with self.lock:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
            else:
                with self.lock:
                    self.answers.append((time.monotonic(), pid))
            time.sleep(0.005)

    def _calls(self, client) -> None:
        self._record(lambda: client.call("market-data", "health_check")["pid"])

    def __enter__(self) -> Stream:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        for t in self.threads:
            t.join(60)
        for c in self.clients:
            c.close()


@pytest.mark.systemd
@pytest.mark.slow
def test_restart_during_a_stream_of_requests_loses_none_and_a_new_process_answers(sd):
    old = rpc(sock(sd, "market-data"), "health_check")["result"]["pid"]
    with Stream(sd) as stream:
        wait_for(lambda: len(stream.answers) >= 50, what="a stream of answers")
        r = sd.trading("restart", "market-data", "--json")
        restarted = time.monotonic()
        wait_for(lambda: sum(t > restarted for t, _ in stream.answers) >= 50, timeout=60,
                 what="answers after the restart")
    report = json.loads(r.stdout)
    assert report["action"] == "restart" and report["services"] == ["market-data"]
    [change] = report["changed"]
    assert (change["unit"], change["change"], change["pid"]) == (
        "trading-market-data.service", "stopped", old)
    assert stream.errors == [], stream.errors[:5]
    pids_after = {pid for t, pid in stream.answers if t > restarted}
    assert old not in pids_after and len(pids_after) == 1, pids_after
    [new] = pids_after
    assert rpc(sock(sd, "market-data"), "health_check")["result"]["pid"] == new
    assert sd.handler_pids("market-data") == [new]
    assert active(sd, "trading-market-data.socket") == "active"


@pytest.mark.systemd
@pytest.mark.slow
def test_restart_says_what_it_did_and_reloads_changed_unit_files(sd):
    pid = rpc(sock(sd, "sentiment"), "health_check")["result"]["pid"]
    # A unit file changed on disk and not yet loaded: restart reloads it first.
    d = sd.unit_dir / "trading-sentiment.service.d"
    d.mkdir(exist_ok=True)
    (d / "test-restart.conf").write_text("[Service]\nEnvironment=TRADING_LOG_LEVEL=DEBUG\n")
    assert sd.show("trading-sentiment.service", "NeedDaemonReload")["NeedDaemonReload"] == "yes"
    r = sd.trading("restart", "sentiment")
    assert r.stdout.splitlines() == [
        "reloaded the unit files (changed on disk)",
        f"stopped trading-sentiment.service (pid {pid}): the next request starts the current "
        "code"]
    assert sd.show("trading-sentiment.service", "NeedDaemonReload")["NeedDaemonReload"] == "no"
    assert sd.handler_pids("sentiment") == []
    assert (sd.trading("restart", "sentiment").stdout
            == "no handler running: the next request starts the current code\n")
    # After a stop, restart brings the socket back too (a restart is never a way to stop).
    sd.trading("stop", "sentiment")
    r = sd.trading("restart", "sentiment")
    assert r.stdout.splitlines() == ["started trading-sentiment.socket: listening, the handler "
                                     "starts on the first request"]
    assert rpc(sock(sd, "sentiment"), "health_check")["result"]["status"] == "ok"
    sd.remove_drop_in(d / "test-restart.conf")


@pytest.mark.systemd
@pytest.mark.slow
def test_start_and_restart_make_a_deleted_socket_file_again(sd):
    """Issue 27: with the socket file deleted the unit still says active, and start/restart
    used to say "nothing to start" while every client got 'not installed' or ran in-process."""
    path = sock(sd, "sentiment")
    assert rpc(path, "health_check")["result"]["service"] == "sentiment"
    for verb in ("start", "restart"):
        path.unlink()
        r = sd.trading(verb, "sentiment")
        assert ("recreated trading-sentiment.socket: its socket file was missing; listening "
                "again, the handler starts on the first request") in r.stdout.splitlines(), \
            r.stdout
        assert path.is_socket()
        assert rpc(path, "health_check")["result"]["service"] == "sentiment"
    assert sd.trading("start", "sentiment").stdout == \
        "nothing to start: every socket listens already\n"
