"""The server: one :class:`~trading.runtime.service.Service` on listening sockets, until idle.

How no request is lost at idle exit: the main loop accepts a connection only when a worker is
free to serve it, and it decides to exit only when no connection is open. A connection that
arrives while the process is exiting is never accepted; it waits in the socket's backlog, which
systemd still holds, and systemd starts the next instance for it. The listening socket is never
shut down or unlinked when systemd owns it.

The main thread runs a selector over the listening sockets and a wake-up socket; each accepted
connection is served by its own thread, at most ``max_connections`` at once (past that,
clients wait in the backlog rather than being refused). Idle exit is the selector's timeout,
not a timer thread. Everything the server needs comes in as arguments (sockets, clock, notify),
so tests can drive it without systemd.
"""

from __future__ import annotations

import logging
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence

from trading.errors import Forbidden, InvalidRequest
from trading.runtime.protocol import DEFAULT_LINE_LIMIT, LineBuffer, LineTooLong, encode, error_response
from trading.runtime.service import Service

logger = logging.getLogger(__name__)

Notify = Callable[[str], object]
# Returns None to admit the peer, or a reason to refuse it; gets (pid, uid, gid).
Authorize = Callable[[int, int, int], "str | None"]


def _no_notify(_state: str) -> None:
    return None


class Server:
    """Serves one :class:`Service` on listening sockets until idle, then returns 0.

    Call :meth:`serve` from the main thread; :meth:`stop` (also wired to SIGTERM and SIGINT
    by :func:`run`) stops accepting, lets in-flight requests finish and returns.
    """

    def __init__(self, service: Service, sockets: Sequence[socket.socket], *,
                 idle_exit: float = 30.0, conn_idle: float = 60.0, max_connections: int = 16,
                 line_limit: int = DEFAULT_LINE_LIMIT, notify: Notify = _no_notify,
                 watchdog_usec: int | None = None, authorize: Authorize | None = None,
                 clock: Callable[[], float] = time.monotonic, drain_timeout: float = 30.0) -> None:
        self.service = service
        self.dispatcher = service.dispatcher()
        self.sockets = list(sockets)
        self.idle_exit = idle_exit
        self.conn_idle = conn_idle
        self.max_connections = max_connections
        self.line_limit = line_limit
        self.notify = notify
        self.watchdog_interval = watchdog_usec / 2e6 if watchdog_usec else None
        self.authorize = authorize
        self.clock = clock
        self.drain_timeout = drain_timeout
        self.stats = service.stats
        self._conns: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._stopping = False
        self._last_activity = clock()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)

    # -- control -------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop accepting and drain; safe from a signal handler or another thread."""
        self._stopping = True
        self._wake()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except (BlockingIOError, OSError):
            pass  # a wake-up is already pending, or we are closing

    # -- main loop -----------------------------------------------------------------------
    def serve(self) -> int:
        sel = selectors.DefaultSelector()
        sel.register(self._wake_r, selectors.EVENT_READ)
        for s in self.sockets:
            s.setblocking(False)
        listening = False
        last_ping = last_status = self.clock()
        self.notify(f"READY=1\nSTATUS={self.service.status()}")
        logger.info("%s serving on %s (idle exit %.3gs)", self.service.name,
                    ", ".join(_sockname(s) for s in self.sockets), self.idle_exit)
        reason = "stopped"
        try:
            while True:
                with self.stats.lock:
                    open_now = self.stats.open_connections
                    idle_since = self._last_activity
                want_listen = not self._stopping and open_now < self.max_connections
                if want_listen != listening:
                    for s in self.sockets:
                        if want_listen:
                            sel.register(s, selectors.EVENT_READ)
                        else:
                            sel.unregister(s)
                    listening = want_listen
                now = self.clock()
                if self._stopping:
                    if open_now == 0:
                        break
                    timeout = None
                elif open_now == 0:
                    timeout = self.idle_exit - (now - idle_since)
                    if timeout <= 0:
                        reason = "idle"
                        break
                else:
                    timeout = None
                if self.watchdog_interval:
                    due = self.watchdog_interval - (now - last_ping)
                    timeout = due if timeout is None else min(timeout, due)
                    timeout = max(timeout, 0)
                if timeout is None or timeout > 1.0:
                    timeout = 1.0 if self.stats.in_flight or open_now else timeout
                for key, _ in sel.select(timeout):
                    if key.fileobj is self._wake_r:
                        self._drain_wake()
                    elif not self._stopping:
                        self._accept(key.fileobj)
                now = self.clock()
                if self.watchdog_interval and now - last_ping >= self.watchdog_interval:
                    self.notify("WATCHDOG=1")
                    last_ping = now
                if now - last_status >= 1.0:
                    self.notify(f"STATUS={self.service.status()}")
                    last_status = now
                if self._stopping:
                    self._shutdown_reads()
        finally:
            sel.close()
        self.notify(f"STOPPING=1\nSTATUS=exiting ({reason})")
        self._join_workers()
        logger.info("%s exiting (%s) after %d requests", self.service.name, reason,
                    self.stats.requests)
        return 0

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _accept(self, listener: socket.socket) -> None:
        # Accept only as many as there are free workers; the rest wait in the backlog.
        while True:
            with self.stats.lock:
                if self.stats.open_connections >= self.max_connections:
                    return
            try:
                conn, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                logger.warning("accept failed: %s", exc)
                return
            with self.stats.lock:
                self.stats.open_connections += 1
                self.stats.connections += 1
                self._conns.add(conn)
            t = threading.Thread(target=self._serve_connection, args=(conn,),
                                 name=f"conn-{self.stats.connections}", daemon=True)
            self._threads.add(t)
            t.start()

    def _shutdown_reads(self) -> None:
        # Draining: no new requests are read; a request being served still gets its answer.
        with self.stats.lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RD)
            except OSError:
                pass

    def _join_workers(self) -> None:
        deadline = time.monotonic() + self.drain_timeout
        for t in list(self._threads):
            t.join(max(0.0, deadline - time.monotonic()))

    # -- one connection ------------------------------------------------------------------
    def _serve_connection(self, conn: socket.socket) -> None:
        try:
            # A blocking socket with kernel timeouts, not Python's settimeout(): that one polls
            # before every recv and send, doubling the system calls per request.
            conn.setblocking(True)
            timeval = struct.pack("ll", int(self.conn_idle), int(self.conn_idle % 1 * 1e6))
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
            refusal = self._check_peer(conn)
            if refusal is not None:
                self._refuse(conn, refusal)
                return
            buf = LineBuffer(self.line_limit)
            while True:
                try:
                    data = conn.recv(65536)
                except (BlockingIOError, TimeoutError):  # SO_RCVTIMEO expired: EAGAIN
                    logger.debug("closing a connection idle for %.3gs", self.conn_idle)
                    return
                if not data:
                    return
                try:
                    for line in buf.feed(data):
                        if line.strip():
                            self._answer(conn, line)
                except LineTooLong:
                    exc = InvalidRequest(f"request line longer than {self.line_limit} bytes",
                                         problem="line-too-long", limit=self.line_limit)
                    conn.sendall(encode(error_response(exc)))
                    return
        except OSError as exc:  # the client went away (reset, broken pipe, send timeout)
            logger.debug("connection ended: %s", exc)
        except Exception:
            logger.exception("connection handler failed")
        finally:
            conn.close()
            with self.stats.lock:
                self._conns.discard(conn)
                self.stats.open_connections -= 1
                self._last_activity = self.clock()
            self._threads.discard(threading.current_thread())
            self._wake()

    def _refuse(self, conn: socket.socket, refusal: Forbidden) -> None:
        # Answer the peer's first request (so its client sees this error, with its id, rather
        # than a broken pipe), then close. Nothing it sends is dispatched.
        conn.settimeout(min(self.conn_idle, 5.0))
        buf, request_id = LineBuffer(self.line_limit), None
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                lines = list(buf.feed(data))
                if lines:
                    break
            import json

            first = json.loads(lines[0])
            if isinstance(first, dict) and isinstance(first.get("id"), (str, int)):
                request_id = first["id"]
        except (OSError, LineTooLong, ValueError):
            pass
        conn.sendall(encode(error_response(refusal, request_id)))

    def _answer(self, conn: socket.socket, line: bytes) -> None:
        with self.stats.lock:
            self.stats.in_flight += 1
        try:
            response = self.dispatcher.handle_line(line)
        finally:
            with self.stats.lock:
                self.stats.in_flight -= 1
                self.stats.requests += 1
        if response is not None:
            conn.sendall(response)

    def _check_peer(self, conn: socket.socket) -> Forbidden | None:
        if self.authorize is None:
            return None
        try:
            creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            pid, uid, gid = struct.unpack("3i", creds)
        except OSError as exc:
            return Forbidden(f"cannot read the peer's credentials: {exc}")
        reason = self.authorize(pid, uid, gid)
        if reason is None:
            return None
        logger.warning("refused peer pid=%d uid=%d gid=%d: %s", pid, uid, gid, reason)
        return Forbidden(reason, uid=uid, gid=gid)


def _sockname(s: socket.socket) -> str:
    try:
        name = s.getsockname()
    except OSError:
        return "?"
    return name if isinstance(name, str) and name else repr(name)
