"""The one JSON-RPC client of the tests and benches: a JSON line out, a JSON line back.

Reading is framed by the services' own :class:`trading.runtime.protocol.LineBuffer`, so a
client here splits lines exactly as a service does, and never holds an unbounded buffer.
Sending is plain ``json.dumps`` (not the project's encoder): what a foreign client would send.

    answer = rpc(path, "health_check")               # a connection of its own, like the CLI

    with Connection.open(path) as c:                 # many requests on one connection
        c.call("echo", {"value": 1}, id=1)
        c.send_raw(b"two\\nlines\\n")
        c.read(), c.read()

Tests that check the framing itself (partial lines, raw bytes, what happens at EOF) still use
a bare socket. Benches import this module by path: ``sys.path.insert(0, REPO / "tests")``.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections import deque
from pathlib import Path
from typing import Any

from trading.runtime.protocol import LineBuffer

# Answers are not bounded by the services' request limit (a bulk_fetch answer can be large):
# this bound only stops a runaway answer from eating the test machine's memory.
ANSWER_LIMIT = 256 << 20


def request(method: str, params: Any = None, id: Any = 1) -> dict[str, Any]:
    """A JSON-RPC 2.0 request object; no ``params`` member when ``params`` is None."""
    return {"jsonrpc": "2.0", "id": id, "method": method,
            **({"params": params} if params is not None else {})}


class Connection:
    """One Unix stream connection to a service, read one whole line at a time."""

    def __init__(self, sock: socket.socket, limit: int = ANSWER_LIMIT) -> None:
        self.sock = sock
        self._buffer = LineBuffer(limit)
        self._lines: deque[bytes] = deque()

    @classmethod
    def open(cls, path: Path | str, timeout: float | None = 20.0) -> Connection:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(str(path))
        except BaseException:
            sock.close()
            raise
        return cls(sock)

    def send(self, message: Any) -> None:
        """Send one JSON text as one line."""
        self.sock.sendall(json.dumps(message).encode() + b"\n")

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_line(self) -> bytes:
        """The next whole line, without its ``\\n``. ``ConnectionError`` if the peer closes
        first (``ConnectionResetError`` if it reset the connection), naming what was left."""
        while not self._lines:
            # 64 KiB, under malloc's mmap threshold: recv(1 MiB) added ~12 us to every round
            # trip in bench_runtime, more than the echo server's whole answer.
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed after {self._buffer.pending} bytes of a line")
            self._lines.extend(self._buffer.feed(chunk))
        return self._lines.popleft()

    def read(self) -> Any:
        """The next line, decoded as JSON."""
        return json.loads(self.read_line())

    def call(self, method: str, params: Any = None, id: Any = 1) -> dict[str, Any]:
        """Send one request and read one answer: the answer object as received, error or
        result (this connection's requests are answered in order)."""
        self.send(request(method, params, id))
        return self.read()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def rpc(path: Path | str, method: str, params: Any = None, timeout: float | None = 20.0,
        id: Any = 1) -> dict[str, Any]:
    """One call on a connection of its own (what any client does); the answer object."""
    with Connection.open(path, timeout) as c:
        return c.call(method, params, id)


# The README's promise: a call from another client is answered within 5 s whatever one
# client sends.
PROMISE_S = 5.0

# A legitimate client, a process of its own: connect, one health_check, the seconds it took.
_LEGIT = r"""
import json, socket, sys, time
t0 = time.monotonic()
with socket.socket(socket.AF_UNIX) as s:
    s.settimeout(float(sys.argv[2]))
    s.connect(sys.argv[1])
    s.sendall(b'{"jsonrpc":"2.0","id":1,"method":"health_check"}\n')
    data = b""
    while not data.endswith(b"\n"):
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
print(json.dumps({"took": time.monotonic() - t0, "answer": json.loads(data)}))
"""


def legit(path: Path | str) -> float:
    """A legitimate client's health_check from its own process: the seconds from its connect
    to the answer (fails when it was not served within the promise)."""
    out = subprocess.run([sys.executable, "-c", _LEGIT, str(path), str(PROMISE_S)],
                         check=False, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout)
    assert got["answer"]["result"]["status"] == "ok", got
    return got["took"]
