"""A handler started the way its unit starts it, for tests whose point is a cold process.

``systemd-socket-activate`` (systemd's own tool, not the manager) holds the listening socket
and, on the first connection, execs the venv's console script ``trading-<service>``: the
``ExecStart=`` of ``units/trading-<service>.service``. So the first line a test sends is the
first line that interpreter ever reads, with nothing imported but what the handler imports
itself. (conftest's ``activate`` runs ``python -m``, and its fixtures' processes usually
answer a health check or a warm-up call first: neither is a cold start.)

    h = ColdHandler("market-data", runtime_dir / "market-data.sock", env, log_path)
    with h.connect() as c:          # the connection that starts the handler
        c.send_raw(line)
        ...
    log = h.stop()

The handler's output goes to a file, not a pipe: a handler that logs many tracebacks must
never block on a full pipe that nobody reads while the test runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from conftest import pass_env, terminate
from support.wire import Connection

SCRIPTS = Path(sys.prefix) / "bin"  # the venv the tests run in: @VENV@/bin in the units


def script(service: str) -> Path:
    """The console script a unit runs for ``service`` (``pyproject.toml``'s scripts)."""
    path = SCRIPTS / f"trading-{service}"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: install the package into this venv "
                                "(pip install -e .) so its console scripts exist")
    return path


class ColdHandler:
    """``systemd-socket-activate -l PATH -E... VENV/bin/trading-<service>``, not yet started:
    the handler starts on the first connection (its pid is this Popen's: the tool execs it
    in place)."""

    def __init__(self, service: str, path: Path, env: dict[str, str], log: Path) -> None:
        self.service = service
        self.path = path
        self.log = log
        if path.exists() or path.is_symlink():
            path.unlink()  # a socket file left by the last one: bind would fail
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                ["systemd-socket-activate", "-l", str(path), *pass_env(env), str(script(service))],
                env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while not path.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{path} never appeared: {self.read_log()[-2000:]}")
            time.sleep(0.005)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def connect(self, timeout: float = 10.0) -> Connection:
        """A connection (the first one starts the handler). bind() creates the path a moment
        before listen(): a refusal in that moment is retried."""
        deadline = time.monotonic() + 5
        while True:
            try:
                return Connection.open(self.path, timeout=timeout)
            except ConnectionRefusedError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.005)

    def running(self) -> bool:
        return self.proc.poll() is None

    def read_log(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> str:
        """SIGTERM (the handler drains and exits), then its whole output. It has as long as
        systemd gives the unit (TimeoutStopSec=35s): on a loaded two-core machine a cold
        handler has taken more than 10 s to drain and exit, and was killed for it."""
        terminate(self.proc, grace=35.0)
        return self.read_log()

    def __enter__(self) -> ColdHandler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def handler_env(**extra: str) -> dict[str, str]:
    """The test's environment (conftest's private directories) plus ``extra``; what
    ``pass_env`` keeps of it is what the handler gets."""
    return {**os.environ, **extra}
