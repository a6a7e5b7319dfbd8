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

What one client cannot do to the others (the promise: after anything one client sends, a
call from another is answered within seconds, without an administrator):

- hold a worker with a request it never finishes: a request line must be complete within
  ``request_timeout`` seconds of its first byte, and a connection idle between requests is
  closed after ``conn_idle``; the main loop enforces both (a byte now and then does not reset
  them, unlike a receive timeout);
- take every worker: one peer process may hold at most ``max_per_peer`` connections, and
  one other user (a peer UID neither root nor the service's own) at most ``max_per_user``
  (one more is refused, ``too-many-connections``). Past ``max_connections`` workers, a
  newcomer takes one of ``reserve`` more at once, and a connection gives way for it, to get
  back below: one that can go at once (idle, or still sending a request after
  ``pressure_grace`` seconds, answered ``busy``) of the heaviest peer (the user, then the
  process, holding the most workers), the least recently busy first; failing that, one being
  answered, after its answer. With the reserve taken too, connections wait in the backlog and
  one gives way for them the same way, one at a time. Giving way shuts the connection for
  reading: what its client already sent is answered, its next send fails at once (EPIPE),
  and a client sends that again on a new connection (ours does). So busy clients, however
  many processes they use, keep a newcomer waiting for a departure at most, and one user's
  long calls leave the other users their share of the workers;
- keep a stopped service alive: after SIGTERM, connections get ``drain_timeout`` seconds to
  finish their request, then the process exits anyway;
- keep a job running for nobody: a request whose client hung up is flagged cancelled
  (:attr:`trading.runtime.service.Service.cancelled`), which long methods check.

The module is long (about 600 lines) for a reason: the accept loop, the deadline rules and
the per-connection loop all read and write one connection table under one lock, and the
order of their steps is what makes idle exit lose nothing; split across modules, each half
would reach into the other's state.
"""

from __future__ import annotations

import math
import os
import select
import socket
import struct
import threading
import time
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from socket import socket as Socket

    Notify = Callable[[str], object]
    # Returns None to admit the peer, or a reason to refuse it; gets (pid, uid, gid).
    Authorize = Callable[[int, int, int], "str | None"]

from trading import log
from trading.errors import Busy, Forbidden, InvalidRequest
from trading.runtime.protocol import (DEFAULT_BATCH_REPLY_LIMIT, DEFAULT_LINE_LIMIT,
                                      DEFAULT_MAX_BATCH, LineBuffer, LineTooLong, decode,
                                      encode, error_response)
from trading.runtime.service import Service, no_notify, set_current_cancel

logger = log.getLogger(__name__)

_IDLE, _READING, _BUSY = "idle", "reading", "busy"
# Which connection gives way first: one that goes at once (idle, then still sending) before
# one being answered (which goes after its answer).
_GIVE_WAY_ORDER = {_IDLE: 0, _READING: 1, _BUSY: 2}
_TICK = 0.25            # how often the main loop checks deadlines while connections are open
_REFUSE_WAIT = 0.25     # how long a refused peer's first request is waited for (for its id)
_POLL_MAX_MS = 2**31 - 1  # poll()'s longest finite wait (about 24 days)
try:
    _POLLRDHUP = select.POLLRDHUP  # Linux: the peer shut down its end
except AttributeError:  # pragma: no cover - other platforms
    _POLLRDHUP = 0


class _Conn:
    """One accepted connection: who it is, and what it is doing since when."""

    __slots__ = ("sock", "pid", "uid", "gid", "state", "since", "started", "cancel",
                 "closing", "leaving")

    def __init__(self, sock: Socket, creds: tuple[int, int, int] | None, now: float):
        self.sock = sock
        self.pid, self.uid, self.gid = creds if creds is not None else (-1, -1, -1)
        self.state = _IDLE
        self.since = now        # when the current state began
        self.started = now      # when it was accepted (``since`` unchanged: no request yet)
        self.cancel = threading.Event()
        self.closing = False    # shut: the worker stops
        self.leaving = False    # giving way: the worker answers what came, then stops

    def shut(self) -> None:
        """Wake the worker blocked on this connection: its recv returns end-of-file."""
        self.closing = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def leave(self) -> None:
        """Give way without losing a request: reads are shut, so the worker's recv returns what
        the client already sent, then end-of-file; the answers still go out. The client's next
        send fails at once with EPIPE (nothing of it is read), which says "send it again"."""
        self.leaving = True
        try:
            self.sock.shutdown(socket.SHUT_RD)
        except OSError:
            pass


def peer_credentials(sock: Socket) -> tuple[int, int, int] | None:
    try:
        return struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                   struct.calcsize("3i")))
    except OSError:
        return None


class Server:
    """Serves one :class:`Service` on listening sockets until idle, then returns 0.

    Call :meth:`serve` from the main thread; :meth:`stop` (also wired to SIGTERM and SIGINT
    by :func:`run`) stops accepting, lets in-flight requests finish (for at most
    ``drain_timeout`` seconds) and returns.
    """

    def __init__(self, service: Service, sockets: Sequence[Socket], *,
                 idle_exit: float = 30.0, conn_idle: float = 60.0, max_connections: int = 16,
                 line_limit: int = DEFAULT_LINE_LIMIT, notify: Notify = no_notify,
                 watchdog_usec: int | None = None, authorize: Authorize | None = None,
                 clock: Callable[[], float] = time.monotonic, drain_timeout: float = 20.0,
                 request_timeout: float = 10.0, max_per_peer: int = 8,
                 max_per_user: int | None = None, own_uid: int | None = None,
                 reserve: int = 2,
                 pressure_grace: float = 0.5, max_batch: int = DEFAULT_MAX_BATCH,
                 batch_reply_limit: int = DEFAULT_BATCH_REPLY_LIMIT) -> None:
        self.service = service
        self.dispatcher = service.dispatcher()
        self.dispatcher.max_batch = max_batch
        self.dispatcher.batch_reply_limit = batch_reply_limit
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
        self.request_timeout = request_timeout
        self.max_per_peer = max_per_peer
        # A quarter of the workers stays for everyone else, even when another user's are all
        # busy with long calls; never below one process's own share. Root and the service's
        # own user (who could stop the service anyway) are not capped.
        self.max_per_user = (max_per_user if max_per_user is not None
                             else max(max_per_peer, max_connections * 3 // 4))
        self.uncapped = {0, os.geteuid() if own_uid is None else own_uid}
        self.reserve = reserve
        self.pressure_grace = pressure_grace
        self.stats = service.stats
        self._conns: dict[Socket, _Conn] = {}
        self._threads: set[threading.Thread] = set()
        self._stopping = False
        self._stop_at: float | None = None
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
        sel = _Poller()
        sel.register(self._wake_r)
        for s in self.sockets:
            s.setblocking(False)
            sel.register(s)
        listening = True  # the listeners are polled: below the ceiling, and not stopping
        ceiling = self.max_connections + self.reserve
        last_ping = last_status = self.clock()
        # No start-up line: under systemd the journal has the manager's "Started ..." and
        # this READY; logging is ~10 ms of a cold start that the first answer need not pay.
        self.notify(f"READY=1\nSTATUS={self.service.status()}")
        reason = "stopped"
        try:
            while True:
                with self.stats.lock:
                    open_now = self.stats.open_connections
                    idle_since = self._last_activity
                now = self.clock()
                if self._stopping:
                    if self._stop_at is None:
                        self._stop_at = now
                        if listening:  # never accepted again: a new connection waits
                            listening = False  # in the backlog for the next instance
                            for s in self.sockets:
                                sel.unregister(s)
                        self._shutdown_reads()
                    if open_now == 0:
                        break
                    if now - self._stop_at >= self.drain_timeout:
                        reason = "stopped; drain deadline passed"
                        logger.warning("%d connection(s) still open %.3gs after the stop: "
                                       "exiting anyway", open_now, self.drain_timeout)
                        break
                    timeout = min(_TICK, self.drain_timeout - (now - self._stop_at))
                elif open_now == 0:
                    timeout = self.idle_exit - (now - idle_since)
                    if timeout <= 0:
                        reason = "idle"
                        break
                else:
                    timeout = _TICK
                if self.watchdog_interval:
                    due = self.watchdog_interval - (now - last_ping)
                    timeout = max(0.0, min(timeout, due))
                if not self._stopping and listening != (open_now < ceiling):
                    # At the ceiling the backlog is not polled (no spinning): a connection
                    # that ends wakes the loop, and each tick looks whether someone waits.
                    listening = not listening
                    for s in self.sockets:
                        (sel.register if listening else sel.unregister)(s)
                if not listening and not self._stopping and _readable(self.sockets):
                    self._make_room(now, waiting=1)  # someone waits in the backlog
                events = sel.select(timeout)
                for ready in events:
                    if ready is self._wake_r:
                        self._drain_wake()
                    else:
                        self._accept(ready, ceiling)
                now = self.clock()
                self._enforce_deadlines(now)
                if self.watchdog_interval and now - last_ping >= self.watchdog_interval:
                    self.notify("WATCHDOG=1")
                    last_ping = now
                if now - last_status >= 1.0:
                    self.notify(f"STATUS={self.service.status()}")
                    last_status = now
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

    def _accept(self, listener: Socket, ceiling: int) -> None:
        # Accept only as many as there are workers for, the reserve included; the rest wait
        # in the backlog (never accepted and left unanswered: a crash would lose them).
        while True:
            with self.stats.lock:
                if self.stats.open_connections >= ceiling:
                    return
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                logger.warning("accept failed: %s", exc)
                return
            creds = peer_credentials(sock)
            now = self.clock()
            over = None
            with self.stats.lock:
                if creds is None:
                    pass
                elif self.max_per_peer and self._held_by("pid", creds[0], self.max_per_peer):
                    over = Busy(f"{self.service.name}: this process already has "
                                f"{self.max_per_peer} connections open; reuse one",
                                problem="too-many-connections", limit=self.max_per_peer)
                elif creds[1] not in self.uncapped and \
                        self._held_by("uid", creds[1], self.max_per_user):
                    over = Busy(f"{self.service.name}: uid {creds[1]} already has "
                                f"{self.max_per_user} connections open, the most one user may; "
                                "close one or try again later", problem="too-many-connections",
                                limit=self.max_per_user)
                if over is None:
                    conn = _Conn(sock, creds, now)
                    self.stats.open_connections += 1
                    self.stats.connections += 1
                    self._conns[sock] = conn
                    reserved = self.stats.open_connections > self.max_connections
            if over is not None:
                self._turn_away(sock, over)
                continue
            t = threading.Thread(target=self._serve_connection, args=(conn,),
                                 name=f"conn-{self.stats.connections}", daemon=True)
            self._threads.add(t)
            t.start()
            if reserved:  # a reserved worker was given out: make room to get it back
                self._make_room(now, spare=conn)

    def _make_room(self, now: float, spare: _Conn | None = None, waiting: int = 0) -> None:
        """Ask connections to give way: one per worker taken past ``max_connections`` and
        per client ``waiting`` in the backlog, less those already on their way out (never
        ``spare``, the newcomer just let in)."""
        give_way: list[_Conn] = []
        with self.stats.lock:
            served = list(self._conns.values())
            live = [c for c in served if not (c.closing or c.leaving)]
            wanted = max(0, len(served) - self.max_connections) + waiting - \
                (len(served) - len(live))
            if wanted <= 0:
                return
            by_user: dict[int, int] = {}
            by_pid: dict[int, int] = {}
            for c in served:
                by_user[c.uid] = by_user.get(c.uid, 0) + 1
                by_pid[c.pid] = by_pid.get(c.pid, 0) + 1
            spared = [spare] if spare is not None else []
            for _ in range(wanted):
                victim = self._heaviest(live, by_user, by_pid, now, give_way + spared)
                if victim is None:
                    break
                give_way.append(victim)
        for c in give_way:
            if c.state == _READING:
                logger.info("a client waits: closing a connection (pid %d) still sending "
                            "its request after %.3gs", c.pid, now - c.since)
                self._send_quietly(c, Busy("the service is at capacity and this request was "
                                           "still incomplete; send whole lines",
                                           problem="busy"))
                c.shut()
            else:
                logger.debug("a client waits: connection (pid %d, uid %d, %s) gives way",
                             c.pid, c.uid, c.state)
                c.leave()

    def _heaviest(self, live: list[_Conn], by_user: dict[int, int], by_pid: dict[int, int],
                  now: float, taken: list[_Conn]) -> _Conn | None:
        """The connection that gives way next (not one in ``taken``): one that can go at once
        before one being answered (which goes after its answer); then of the user, then the
        process, holding the most workers; then idle before still sending; the least recently
        busy first. Spared for ``pressure_grace`` seconds: a connection that has not sent its
        first request yet, one still sending, and the idle one of a process holding only it
        (a client between two calls)."""
        best, best_key = None, None
        for c in live:
            if c in taken:
                continue
            young = now - c.since < self.pressure_grace
            if young and (c.state == _READING or c.state == _IDLE and (
                    c.since == c.started or by_pid[c.pid] == 1)):
                continue
            order = _GIVE_WAY_ORDER[c.state]
            key = (order == 2, -by_user[c.uid], -by_pid[c.pid], order, c.since)
            if best_key is None or key < best_key:
                best, best_key = c, key
        return best

    def _held_by(self, who: str, value: int, cap: int) -> bool:
        """Whether the process (``who="pid"``) or user (``"uid"``) ``value`` holds ``cap``
        connections still in use (one whose client has already hung up, and whose worker has
        not noticed yet, does not count); called under the lock."""
        mine = [c for c in self._conns.values()
                if getattr(c, who) == value and not (c.closing or c.leaving)]
        return len(mine) >= cap and sum(1 for c in mine if not _hung_up(c.sock)) >= cap

    def _turn_away(self, sock: Socket, error) -> None:
        """Answer with ``error`` (best effort, never blocking the main loop) and close."""
        try:
            sock.setblocking(False)
            sock.send(encode(error_response(error)))
        except OSError:
            pass
        finally:
            sock.close()

    def _shutdown_reads(self) -> None:
        # Draining: no new requests are read; a request being served still gets its answer.
        with self.stats.lock:
            conns = list(self._conns.values())
        for c in conns:
            try:
                c.sock.shutdown(socket.SHUT_RD)
            except OSError:
                pass

    def _enforce_deadlines(self, now: float) -> None:
        """Close connections past their deadline; flag requests whose client hung up."""
        with self.stats.lock:
            conns = [c for c in self._conns.values() if not c.closing]
        for c in conns:
            # State before since: a worker writes since first, so a state just read never
            # comes with the since of the state before it (a long request's since, say).
            state = c.state
            age = now - c.since
            if state == _READING and age >= self.request_timeout:
                logger.info("closing a connection (pid %d) whose request was not complete "
                            "after %.3gs", c.pid, self.request_timeout)
                self._send_quietly(c, InvalidRequest(
                    f"request not complete within {self.request_timeout:g}s of its first byte",
                    problem="request-timeout", timeout=self.request_timeout))
                c.shut()
            elif state == _IDLE and age >= self.conn_idle:
                logger.debug("closing a connection idle for %.3gs", self.conn_idle)
                c.shut()
            elif state == _BUSY and _POLLRDHUP and not c.cancel.is_set() \
                    and _hung_up(c.sock, c.leaving):
                logger.info("the client of a request in flight (pid %d) hung up: cancelling",
                            c.pid)
                c.cancel.set()

    @staticmethod
    def _send_quietly(c: _Conn, error) -> None:
        try:
            c.sock.send(encode(error_response(error)), socket.MSG_DONTWAIT)
        except OSError:
            pass

    def _join_workers(self) -> None:
        deadline = time.monotonic() + (0.5 if self._stop_at is not None else self.drain_timeout)
        with self.stats.lock:
            conns = list(self._conns.values())
        if self._stop_at is not None:
            for c in conns:  # past the drain deadline: wake every worker that still waits
                c.shut()
        for t in list(self._threads):
            t.join(max(0.0, deadline - time.monotonic()))

    # -- one connection ------------------------------------------------------------------
    def _serve_connection(self, conn: _Conn) -> None:
        sock = conn.sock
        try:
            # A blocking socket: the main loop enforces the read deadlines (it shuts the
            # socket down, which ends recv); a kernel send timeout bounds a client that does
            # not read its answers.
            sock.setblocking(True)
            timeval = struct.pack("ll", int(self.request_timeout),
                                  int(self.request_timeout % 1 * 1e6))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
            refusal = self._check_peer(conn)
            if refusal is not None:
                self._refuse(sock, refusal)
                return
            buf = LineBuffer(self.line_limit)
            set_current_cancel(conn.cancel)  # this thread serves this connection only
            while not conn.closing:  # (giving way ends at end-of-file, after what came)
                data = sock.recv(65536)
                if not data:
                    return
                if conn.state == _IDLE and not buf.pending:
                    conn.since, conn.state = self.clock(), _READING  # a line's first byte
                try:
                    for line in buf.feed(data):
                        if line.strip():
                            conn.state = _BUSY  # never evicted while it is being answered
                            self._answer(conn, line)
                except LineTooLong:
                    exc = InvalidRequest(f"request line longer than {self.line_limit} bytes",
                                         problem="line-too-long", limit=self.line_limit)
                    sock.sendall(encode(error_response(exc)))
                    return
                if not buf.pending:
                    conn.since, conn.state = self.clock(), _IDLE
                elif conn.state != _READING:
                    conn.since, conn.state = self.clock(), _READING
        except OSError as exc:  # the client went away (reset, broken pipe, send timeout)
            logger.debug("connection ended: %s", exc)
        except Exception:
            logger.exception("connection handler failed")
        finally:
            sock.close()
            with self.stats.lock:
                self._conns.pop(sock, None)
                self.stats.open_connections -= 1
                self._last_activity = self.clock()
            self._threads.discard(threading.current_thread())
            self._wake()

    def _refuse(self, sock: Socket, refusal: Forbidden) -> None:
        # Answer the peer's first request if it comes at once (so its client sees this error
        # with its id, rather than a broken pipe), then close. Nothing it sends is dispatched,
        # and a peer that sends nothing holds the worker for a moment only.
        sock.settimeout(_REFUSE_WAIT)
        buf, request_id = LineBuffer(self.line_limit), None
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                lines = list(buf.feed(data))
                if lines:
                    first = decode(lines[0].decode("utf-8"))
                    if isinstance(first, dict) and isinstance(first.get("id"), (str, int)):
                        request_id = first["id"]
                    break
        except (OSError, LineTooLong, ValueError, RecursionError):
            pass
        try:
            sock.sendall(encode(error_response(refusal, request_id)))
        except OSError:
            pass

    def _answer(self, conn: _Conn, line: bytes) -> None:
        with self.stats.lock:
            self.stats.in_flight += 1
        if conn.cancel.is_set():  # set only by a hang-up; clear() takes a lock every time
            conn.cancel.clear()
        try:
            response = self.dispatcher.handle_line(line)
        finally:
            with self.stats.lock:
                self.stats.in_flight -= 1
                self.stats.requests += 1
        if response is not None:
            conn.sock.sendall(response)

    def _check_peer(self, conn: _Conn) -> Forbidden | None:
        if self.authorize is None:
            return None
        if conn.pid < 0:
            return Forbidden("cannot read the peer's credentials")
        reason = self.authorize(conn.pid, conn.uid, conn.gid)
        if reason is None:
            return None
        logger.warning("refused peer pid=%d uid=%d gid=%d: %s", conn.pid, conn.uid, conn.gid,
                       reason)
        return Forbidden(reason, uid=conn.uid, gid=conn.gid)


def _readable(socks: Sequence[Socket]) -> bool:
    """Whether a connection waits in one of the listeners' backlogs (without accepting it)."""
    poller = select.poll()
    try:
        for s in socks:
            poller.register(s, select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return False


def _hung_up(sock: Socket, reads_shut: bool = False) -> bool:
    """True when the peer has closed its end (checked without reading anything). Once our
    own reads are shut (giving way), "read hang-up" is always set: only a full hang-up counts."""
    poller = select.poll()
    mask = select.POLLHUP | select.POLLERR | (0 if reads_shut else _POLLRDHUP)
    try:
        poller.register(sock, _POLLRDHUP)
        return any(ev & mask for _, ev in poller.poll(0))
    except (OSError, ValueError):
        return False


class _Poller:
    """What the main loop needs of a selector, on ``select.poll``: wait for any of a few
    sockets to be readable, and say which, with a timeout in seconds rounded up to whole
    milliseconds (the loop's deadlines are in seconds; a short one must not spin)."""

    def __init__(self) -> None:
        self._poll = select.poll()
        self._by_fd: dict[int, Socket] = {}

    def register(self, sock: Socket) -> None:
        self._by_fd[sock.fileno()] = sock
        self._poll.register(sock, select.POLLIN)

    def unregister(self, sock: Socket) -> None:
        fd = next(fd for fd, s in self._by_fd.items() if s is sock)
        del self._by_fd[fd]
        self._poll.unregister(fd)

    def select(self, timeout: float) -> list[Socket]:
        """The readable sockets (an error or hang-up counts: the next read says which),
        waiting at most ``timeout`` seconds; rounded up to the next millisecond, so a short
        timeout is never a busy loop."""
        ms = min(math.ceil(max(timeout, 0.0) * 1e3), _POLL_MAX_MS) if timeout < math.inf else -1
        return [self._by_fd[fd] for fd, _ in self._poll.poll(ms) if fd in self._by_fd]

    def close(self) -> None:
        self._by_fd.clear()
