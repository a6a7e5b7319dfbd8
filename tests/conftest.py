"""Shared fixtures: a clean environment per test, and helpers to run real handler processes.

Every test gets its own runtime, state and cache directories (``TRADING_RUNTIME_DIR`` etc.),
no inherited ``TRADING_*`` or ``LISTEN_*`` variables, a fresh configuration and a fresh
default client; and nothing it started may outlive it: :func:`_check_settled` fails a test
that leaves a thread running or a child process alive.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from support.units import render_units
from support.wire import Connection

# The systemd sandbox's fixtures (user_manager, installed, sd), for every module that asks.
pytest_plugins = ["sandbox"]

REPO = Path(__file__).resolve().parent.parent
ASX_DAILY = REPO / "tests" / "data" / "asx-daily"  # real bars; see its README
PYTHON = sys.executable
SETTLE_S = 5.0  # grace for what a test stopped to finish ending (a joined thread, a SIGTERM)


def _become_subreaper() -> None:
    """Orphaned grandchildren (a double fork, a killed parent) become ours, not init's, so the
    settled check sees a handler that escaped the process that started it."""
    PR_SET_CHILD_SUBREAPER = 36
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: direct children are still checked
        pass


_become_subreaper()


def _children() -> dict[int, str]:
    """This process's child processes, pid to state letter (``Z`` for a zombie)."""
    pids: set[int] = set()
    try:
        for task in Path("/proc/self/task").iterdir():
            pids.update(int(p) for p in (task / "children").read_text().split())
    except OSError:  # no CONFIG_PROC_CHILDREN: walk /proc for our ppid
        me = os.getpid()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                if int(stat.rpartition(")")[2].split()[1]) == me:
                    pids.add(int(entry.name))
    states = {}
    for pid in pids:
        try:
            states[pid] = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        except OSError:  # gone (and reaped by its owner) meanwhile
            pass
    return states


def _describe(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        return f"pid {pid}: {' '.join(a.decode(errors='replace') for a in argv if a)}"
    except OSError:
        return f"pid {pid}"


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # its Popen waited for it first
        pass


@pytest.fixture(autouse=True)
def _check_settled():
    """After each test (and its fixtures' teardown: this is set up first, so it ends last),
    every thread the test started has ended and no child process it started is alive.

    What existed before the test (a module-scoped fixture's process, pytest's own threads) is
    left alone. A zombie (ended, never waited for) is reaped without complaint; a leak is
    stopped (child processes killed) so it cannot disturb the next test, then reported.
    """
    threads_before = set(threading.enumerate())
    children_before = set(_children())
    yield
    deadline = time.monotonic() + SETTLE_S
    for t in set(threading.enumerate()) - threads_before:
        if not isinstance(t, threading._DummyThread):  # a foreign thread cannot be joined
            t.join(max(0.0, deadline - time.monotonic()))
    leaked_threads = [t for t in set(threading.enumerate()) - threads_before if t.is_alive()]
    while True:
        alive = []
        for pid, state in _children().items():
            if pid in children_before:
                continue
            if state == "Z":
                _reap(pid)
            else:
                alive.append(pid)
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    leaked_children = [_describe(pid) for pid in alive]
    for pid in alive:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
    problems = [f"thread {t.name!r} ({t.__class__.__name__}, target "
                f"{getattr(getattr(t, '_target', None), '__qualname__', '?')}) still running"
                for t in leaked_threads]
    problems += [f"child process still alive, killed: {c}" for c in leaked_children]
    if problems:
        pytest.fail("the test left things running:\n  " + "\n  ".join(problems),
                    pytrace=False)


@pytest.fixture(autouse=True)
def _stop_predictors():
    """A plugged predictor runs in a child process that a process-wide cache keeps warm for
    the next call; after a test that started one, it is stopped (the settled check above then
    finds no child left)."""
    yield
    predictors = sys.modules.get("trading.signals.predictors")
    if predictors is not None:
        predictors.close_all()


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch, tmp_path_factory):
    """Isolate each test: private directories, no leaked TRADING_/LISTEN_ variables."""
    for key in list(os.environ):
        if key.startswith(("TRADING_", "LISTEN_", "NOTIFY_SOCKET", "WATCHDOG_", "JOURNAL_STREAM",
                           "STATE_DIRECTORY", "CACHE_DIRECTORY")):
            monkeypatch.delenv(key, raising=False)
    # Unix socket paths are limited to 108 bytes: keep the runtime dir short.
    base = Path(os.environ.get("TMPDIR", "/tmp"))
    import tempfile

    runtime = Path(tempfile.mkdtemp(prefix="tr-", dir=base))
    root = tmp_path_factory.mktemp("trading")
    monkeypatch.setenv("TRADING_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("TRADING_STATE_DIR", str(root / "state"))
    monkeypatch.setenv("TRADING_CACHE_DIR", str(root / "cache"))
    monkeypatch.setenv("TRADING_CONFIG", str(root / "config.toml"))  # absent unless a test writes it
    # The shipped default withholds the rules' BUY and SELL (docs/choosing-the-predictor.md).
    # Most tests are about what a call does downstream (alerts, outcomes, charts, pages), so
    # they let the rules make them; tests of the default itself delete this variable.
    monkeypatch.setenv("TRADING_DIRECTIONAL_CALLS", "true")
    from trading import config

    config.reset()
    yield
    config.reset()
    shutil.rmtree(runtime, ignore_errors=True)


@pytest.fixture
def runtime_dir() -> Path:
    return Path(os.environ["TRADING_RUNTIME_DIR"])


@pytest.fixture
def asx_daily() -> Path:
    return ASX_DAILY


def wait_for(predicate, timeout: float = 10.0, what: str = "condition", interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def pass_env(env: dict[str, str]) -> list[str]:
    """``-E NAME`` flags: systemd-socket-activate passes only HOME, TERM and PATH by default."""
    keep = ("TRADING_", "PYTHON", "XDG_", "HOME", "TZ", "LANG", "LC_", "CI")
    return [f"-E{k}={v}" for k, v in env.items() if k.startswith(keep)]


class Activated:
    """A handler under ``systemd-socket-activate``: systemd's own tool passes the socket."""

    def __init__(self, module: str, path: Path, env: dict[str, str], args: list[str],
                 command: list[str] | None = None):
        self.path = path
        self.proc = subprocess.Popen(
            ["systemd-socket-activate", "-l", str(path), *pass_env(env),
             *(command or [PYTHON, "-m", module]), *args],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wait_for(path.exists, what=f"{path} to exist")

    def connect(self) -> Connection:
        return Connection.open(self.path, timeout=10)

    def stop(self) -> str:
        terminate(self.proc)
        return self.proc.stdout.read() if self.proc.stdout else ""


def terminate(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM (a handler drains and exits), SIGKILL after ``grace`` seconds; reaped."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def activate(runtime_dir):
    """``activate("market-data", idle_exit=1.0)`` starts that handler under socket activation."""
    started: list[Activated] = []

    def start(service: str, *args: str, idle_exit: float | None = None, **env_extra: str):
        from trading.handlers import SERVICES

        env = dict(os.environ, **env_extra)
        if idle_exit is not None:
            env["TRADING_IDLE_EXIT"] = str(idle_exit)
        a = Activated(SERVICES[service], runtime_dir / f"{service}.sock", env, list(args))
        started.append(a)
        return a

    yield start
    for a in started:
        a.stop()


@pytest.fixture
def serve(runtime_dir):
    """``serve(**server_kwargs)``: a Server on a real socket in this test's runtime dir,
    serving ``support.slow_service.Slow`` from a thread (:class:`support.running.Running`);
    stopped after the test."""
    from support.running import Running

    started = []

    def start(**kwargs):
        r = Running(runtime_dir / f"s{len(started)}.sock", **kwargs)
        started.append(r)
        return r

    yield start
    for r in started:
        r.close()


@pytest.fixture(scope="session")
def rendered(tmp_path_factory) -> dict[str, Path]:
    """The units as a system and as a --user install of this venv would write them, by mode;
    rendered once, read only."""
    return {mode: render_units(mode, tmp_path_factory.mktemp(mode)) for mode in ("system", "user")}


@pytest.fixture
def cfg():
    """The configuration of this test's environment (its own directories)."""
    from trading import config

    return config.get()


@pytest.fixture
def now(monkeypatch):
    """Set the moment every clock reads (``TRADING_NOW``): ``now(datetime)``."""
    def set_(moment) -> None:
        monkeypatch.setenv("TRADING_NOW", moment.isoformat())
    return set_


@pytest.fixture
def store(cfg):
    """The store at this test's configured path, closed after the test."""
    from trading.runtime.store import Store

    s = Store(cfg.db_path)
    yield s
    s.close()
