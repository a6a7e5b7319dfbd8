"""What one client cannot do to the others on the dashboard's HTTP server: the bounds that
uvicorn lacks, as the JSON-RPC runtime (:mod:`trading.runtime.server`) has them.
:func:`trading.web.serve.make_server` puts :func:`bounded_protocol` in place of uvicorn's h11
protocol, with one :class:`Gate` per server. A client cannot:

- hold a connection by sending slowly: a request (headers and body) must be complete within
  ``REQUEST_TIMEOUT_S`` of the connection being ready for it (a byte now and then does not
  reset it, unlike uvicorn's keep-alive timeout, which only covers the wait for a first byte);
- hold one by reading slowly: an answer whose writing stays paused (the client reads nothing
  while the buffers are full) for ``REQUEST_TIMEOUT_S`` is cut off;
- take every descriptor: at most ``max_connections`` are open, well below ``RLIMIT_NOFILE``
  (:func:`connection_cap`), so ``accept()`` never fails with EMFILE; a connection beyond the
  cap closes the oldest one that is still sending its request (or idle between requests),
  and only when every one is being answered is the newcomer told 503 at once;
- fill the journal: the warnings this produces, and asyncio's and uvicorn's, pass
  :class:`OncePerInterval` (one line per kind per ``LOG_EVERY_S``, with a count);
- send a large body: that is :mod:`trading.web.guard`'s (nothing past a form's size is read).

Importing this module costs no uvicorn: the protocol class is made on first use.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

logger = logging.getLogger(__name__)

# Figures from tests/test_web_hardening.py and the measurements below (docs/dashboard.md).
# A browser sends a request's headers in one packet and a form in the next; 10 s, as the
# JSON-RPC runtime's request_timeout, leaves room for a slow tunnel.
REQUEST_TIMEOUT_S = 10.0
# One user's dashboard: a few tabs, six connections each and an event stream. Measured: a
# connection holding 16 KB of unfinished headers (h11's cap) costs 18 KiB of RSS, one with a
# few bytes 0.5 KiB, so 256 cost under 5 MiB of the unit's 200M; each holds one descriptor.
MAX_CONNECTIONS = 256
# Descriptors the process needs besides its connections: measured at 86 with 72 clients
# reading pages at once (7 of the process's own, and the store's file and WAL in each of the
# 40 worker threads), plus one service socket per worker thread.
FD_RESERVE = 128
# asyncio accepts up to `backlog` connections in one go, before any of them reaches the
# Gate, so that many descriptors are kept free too (uvicorn's default is 2048).
BACKLOG = 128
LOG_EVERY_S = 10.0


def connection_cap(nofile: int | None = None) -> int:
    """How many connections may be open at once: ``MAX_CONNECTIONS``, or fewer when the
    descriptor limit (``RLIMIT_NOFILE``, soft) would not leave room for the process's own
    descriptors and one accept burst."""
    if nofile is None:
        import resource

        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if nofile < 0:  # RLIM_INFINITY
        return MAX_CONNECTIONS
    return max(8, min(MAX_CONNECTIONS, nofile - FD_RESERVE - BACKLOG))



# -- the log -------------------------------------------------------------------------------
class OncePerInterval:
    """A logging filter: one record of each kind (logger, level, first line of the message)
    per ``every`` seconds; the next one that passes says how many were left out. A flood of
    refused connections (or asyncio's "out of system resource", 265,313 lines in 30 s once)
    costs the journal one line per kind every ``every`` seconds."""

    def __init__(self, every: float = LOG_EVERY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.every = every
        self.clock = clock
        self.kinds: dict[tuple, list] = {}  # kind -> [when it last passed, left out since]

    def filter(self, record: logging.LogRecord) -> bool:
        kind = (record.name, record.levelno, str(record.msg).split("\n", 1)[0][:200])
        now = self.clock()
        seen = self.kinds.get(kind)
        if seen is not None and now - seen[0] < self.every:
            seen[1] += 1
            return False
        if seen is not None and seen[1]:
            left_out = f"{seen[1]} more like this in the last {now - seen[0]:.0f} s"
            record.msg = f"{record.msg} ({left_out})"
        if len(self.kinds) >= 256:
            self.kinds.clear()
        self.kinds[kind] = [now, 0]
        return True


def quiet_floods(names: Sequence[str] = ("asyncio", "uvicorn.error", __name__)) -> None:
    """Put :class:`OncePerInterval` on the loggers a flood of connections writes to (once:
    a filter on a logger applies to the records that logger itself creates)."""
    for name in names:
        log = logging.getLogger(name)
        if not any(isinstance(f, OncePerInterval) for f in log.filters):
            log.addFilter(OncePerInterval())


class Gate:
    """The bounds on one server's connections that uvicorn lacks (module docstring): the
    request deadline and the cap, with the connections still waiting for (the rest of) a
    request, oldest first, as the ones to close when the cap is reached. The protocol
    (:func:`bounded_protocol`) calls :meth:`admit`, :meth:`waiting_for_request`,
    :meth:`answering` and :meth:`gone`; a connection only needs ``close()``."""

    BUSY = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: 31\r\nretry-after: 1\r\nconnection: close\r\n\r\n"
            b"busy: every connection is busy\n")  # 31 bytes

    def __init__(self, *, max_connections: int,
                 request_timeout: float = REQUEST_TIMEOUT_S) -> None:
        self.max_connections = max_connections
        self.request_timeout = request_timeout
        self.waiting: dict = {}  # connection -> its deadline (a TimerHandle), oldest first

    def admit(self, conn, connections: set) -> bool:
        """Make room for ``conn``, just opened (and in ``connections``): close the oldest
        waiting ones while over the cap. False when none can be closed: refuse ``conn``."""
        while len(connections) > self.max_connections:
            victim = next((c for c in self.waiting if c is not conn), None)
            if victim is None:
                logger.warning("%d connections open, every one being answered: refusing "
                               "new ones (503)", len(connections) - 1)
                return False
            self.gone(victim)
            connections.discard(victim)  # at once: its connection_lost comes a tick later
            victim.close()
            logger.warning("%d connections open: closing the oldest still sending its "
                           "request", self.max_connections)
        return True

    def waiting_for_request(self, conn, loop) -> None:
        """``conn`` is ready for a request: it has ``request_timeout`` seconds to send it."""
        self.gone(conn)
        self.waiting[conn] = loop.call_later(self.request_timeout, self._expire, conn)

    def answering(self, conn) -> None:
        """``conn``'s request is in: answering it has no deadline and it is not closed for
        room."""
        self.gone(conn)

    def gone(self, conn) -> None:
        deadline = self.waiting.pop(conn, None)
        if deadline is not None:
            deadline.cancel()

    def _expire(self, conn) -> None:
        self.waiting.pop(conn, None)
        logger.info("closing a connection that sent no complete request in %g s",
                    self.request_timeout)
        conn.close()


def bounded_protocol(gate: Gate):
    """uvicorn's h11 protocol, reporting to ``gate`` (a class per server: uvicorn builds the
    protocol itself, from ``Config(http=...)``)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class BoundedH11Protocol(H11Protocol):
        stall = None  # while writing is paused: the timer that cuts a client reading nothing

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            if not gate.admit(self, self.connections):
                self.connections.discard(self)
                transport.write(Gate.BUSY)
                transport.close()
                return
            gate.waiting_for_request(self, self.loop)

        def handle_events(self) -> None:
            super().handle_events()
            cycle = self.cycle
            if cycle is not None and not cycle.more_body and not cycle.response_complete:
                gate.answering(self)

        def on_response_complete(self) -> None:
            if not self.transport.is_closing():
                gate.waiting_for_request(self, self.loop)  # before a pipelined request
            super().on_response_complete()

        def pause_writing(self) -> None:
            super().pause_writing()
            if self.stall is None:
                self.stall = self.loop.call_later(gate.request_timeout, self.cut_off)

        def resume_writing(self) -> None:
            super().resume_writing()
            if self.stall is not None:
                self.stall.cancel()
                self.stall = None

        def connection_lost(self, exc) -> None:
            gate.gone(self)
            if self.stall is not None:
                self.stall.cancel()
            super().connection_lost(exc)

        def close(self) -> None:
            """Close for the gate (deadline or room): nothing is owed on this connection."""
            if not self.transport.is_closing():
                self.transport.close()

        def cut_off(self) -> None:
            """Drop a client that read nothing for ``request_timeout`` s, and the answer
            buffered for it (``close()`` would wait for that to be read)."""
            self.stall = None
            logger.info("cutting off a client that read nothing of its answer in %g s",
                        gate.request_timeout)
            self.transport.abort()

    return BoundedH11Protocol


