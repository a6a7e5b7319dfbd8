"""A real Server on a real listening Unix socket, serving the test-only ``Slow`` service from
a background thread: how the runtime tests drive it without systemd (conftest's ``serve``
fixture makes them and stops them)."""

from __future__ import annotations

import json
import socket
import threading
import time

from support.slow_service import Slow
from support.wire import Connection
from trading.runtime.activation import bind_unix
from trading.runtime.server import Server


class Running:
    def __init__(self, path, **kwargs):
        self.path = path
        self.listener = bind_unix(path)
        self.service = Slow()
        self.notes: list[str] = []
        kwargs.setdefault("idle_exit", 30.0)
        kwargs.setdefault("notify", self.notes.append)
        self.server = Server(self.service, [self.listener], **kwargs)
        self.code = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        self.code = self.server.serve()

    def connect(self) -> Connection:
        """A client connection framed by the tests' one JSON-line client."""
        return Connection.open(self.path, timeout=10)

    def raw(self) -> socket.socket:
        """A bare socket, for tests whose point is what bytes arrive and when."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(str(self.path))
        return s

    def legit_call(self, method="echo", **params) -> tuple[dict, float]:
        """A well-behaved client's whole call on a connection of its own: (answer, seconds)."""
        t0 = time.monotonic()
        with self.raw() as s:
            s.sendall(json.dumps({"jsonrpc": "2.0", "id": 1, "method": method,
                                  "params": params}).encode() + b"\n")
            return read_line(s), time.monotonic() - t0

    def finish(self, timeout=10):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "server did not exit"
        self.listener.close()
        return self.code

    def close(self):
        self.server.stop()
        self.thread.join(30)
        self.listener.close()


def read_line(s: socket.socket) -> dict:
    """The first JSON line a bare socket receives."""
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {buf!r}")
        buf += chunk
    return json.loads(buf.splitlines()[0])
