"""Shared fixtures: a clean environment per test, and helpers to run real handler processes.

Every test gets its own runtime, state and cache directories (``TRADING_RUNTIME_DIR`` etc.),
no inherited ``TRADING_*`` or ``LISTEN_*`` variables, a fresh configuration and a fresh
default client; and no handler process it started may outlive it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ASX_DAILY = REPO / "tests" / "data" / "asx-daily"  # real bars; see its README
PYTHON = sys.executable


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


def rpc(path: Path, method: str, params: dict | None = None, timeout: float = 20.0) -> dict:
    """One raw JSON-RPC call on a connection of its own (what any client does); the answer
    object as received, error or result."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        req = {"jsonrpc": "2.0", "id": 1, "method": method,
               **({"params": params} if params is not None else {})}
        s.sendall(json.dumps(req).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError(f"connection closed after {buf!r}")
            buf += chunk
    return json.loads(buf)


class Activated:
    """A handler under ``systemd-socket-activate``: systemd's own tool passes the socket."""

    def __init__(self, module: str, path: Path, env: dict[str, str], args: list[str]):
        self.path = path
        self.proc = subprocess.Popen(
            ["systemd-socket-activate", "-l", str(path), *pass_env(env), PYTHON, "-m", module,
             *args],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wait_for(path.exists, what=f"{path} to exist")

    def connect(self) -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(str(self.path))
        return s

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.stdout.read() if self.proc.stdout else ""


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
