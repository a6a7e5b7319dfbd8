"""The client: ``call(service, method, **params)`` over the service's Unix socket.

The socket path comes from the configuration (``TRADING_RUNTIME_DIR``, else
``$XDG_RUNTIME_DIR/trading`` for a user install, else ``/run/trading``). A connection is reused
within the process; every call has a connect and a read timeout, so no call hangs. Errors are
the project's own: :class:`ServiceUnavailable` (no socket, refused, lost), :class:`CallTimeout`,
or the remote :class:`RPCError` with its code and problem.

Replies are read through the same bounded :class:`~trading.runtime.protocol.LineBuffer` the
server reads requests with: a reply longer than ``reply_limit`` (the ``reply_limit`` setting)
is a clear :class:`ServiceUnavailable`, never an unbounded buffer.

Where no socket exists (systemd absent, nothing installed) and ``in_process`` is ``auto`` (the
default), a :class:`LocalTransport` runs the same handler inside this process through the same
dispatcher, so the product works on any machine. ``on_fallback(service)`` is called before a
service first runs here; it may raise to refuse (the CLI does when systemd holds the service
stopped). ``never`` turns that off (the systemd tests
use it); ``always`` skips the sockets altogether. The transport is given the service classes
by whoever builds the client (``trading.handlers.client``): nothing here imports a handler.
"""

from __future__ import annotations

import itertools
import os
import select
import socket
import threading
import time
TYPE_CHECKING = False  # typing costs ~3 ms of every cold start; annotations are strings
if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path
    from typing import Any

    ServiceFactory = Callable[[str], type]  # service name -> its Service class

from trading import log
from trading import config as _config
from trading.errors import CallTimeout, RPCError, ServiceUnavailable
from trading.runtime.protocol import LineBuffer, LineTooLong, decode, encode

logger = log.getLogger(__name__)

CONNECT_TIMEOUT = 5.0


class _Connection:
    def __init__(self, path: Path | str, connect_timeout: float, reply_limit: int) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(connect_timeout)
        try:
            self.sock.connect(os.fspath(path))
        except BaseException:
            self.sock.close()
            raise
        self.lines = LineBuffer(reply_limit)
        self.ready: list[bytes] = []  # whole lines received past the one being waited for
        self.lock = threading.Lock()

    def alive(self) -> bool:
        """False when the service closed the connection while we were not looking."""
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return False
        if not readable:
            return True
        try:
            return bool(self.sock.recv(1, socket.MSG_PEEK))
        except OSError:
            return False

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class _Undelivered(Exception):
    """The request never reached the service (EPIPE on send): :meth:`Client.call` resends it."""



class LocalTransport:
    """Runs services inside this process, through the same dispatcher as the wire.

    Built from a registry (``factory(name)`` returns the service class); each service is
    created on its first call with a context whose peers are the owning client, so a service
    running here reaches its own peers by socket or, failing that, here too.
    ``store_factory`` opens the store the services use here (the CLI's reader passes a
    read-only one: ``trading history`` with the services stopped).
    """

    def __init__(self, factory: ServiceFactory,
                 store_factory: Callable[[], Any] | None = None) -> None:
        self.factory = factory
        self.store_factory = store_factory  # None: each service opens the store as it would
        self._services: dict[str, Any] = {}
        self._lock = threading.Lock()

    def call(self, client: Client, service: str, method: str, params: Any,
             timeout: float | None = None) -> Any:
        """Run one call here; with ``timeout``, wait that long for it as a socket client would
        (the call goes on in its thread, which the process's exit ends: an in-process call
        cannot be cancelled, only left)."""
        if timeout is None:
            return self._call(client, service, method, params)
        done: list[tuple[bool, Any]] = []

        def work() -> None:
            try:
                done.append((True, self._call(client, service, method, params)))
            except BaseException as exc:  # handed to the caller's thread
                done.append((False, exc))

        worker = threading.Thread(target=work, name=f"in-process {service}.{method}",
                                  daemon=True)
        worker.start()
        worker.join(timeout)
        if not done:
            raise CallTimeout(f"{service} did not answer within {timeout:g}s (in-process)")
        ok, value = done[0]
        if ok:
            return value
        raise value

    def _call(self, client: Client, service: str, method: str, params: Any) -> Any:
        with self._lock:
            entry = self._services.get(service)
            if entry is None:
                from trading.runtime.service import Context

                try:
                    klass = self.factory(service)
                except KeyError as exc:
                    raise ServiceUnavailable(str(exc.args[0] if exc.args else exc)) from exc
                svc = klass(Context(client.cfg, peers=client,
                                    store_factory=self.store_factory))
                entry = self._services[service] = (svc, svc.dispatcher())
        svc, dispatcher = entry
        request = {"jsonrpc": "2.0", "method": method, "id": 0}
        if params is not None:
            request["params"] = params
        # The same JSON round trip as the wire, so in-process answers are identical.
        raw = dispatcher.handle_line(encode(request))
        with svc.stats.lock:
            svc.stats.requests += 1
        response = decode(raw.decode("utf-8"))
        if "error" in response:
            raise RPCError.from_json(response["error"])
        return response.get("result")

    def close(self) -> None:
        with self._lock:
            services = [svc for svc, _ in self._services.values()]
            self._services.clear()
        for svc in services:
            svc.close()


# Connections a process has open to each socket when every call opens its own (a service's
# peer client). A service calling a peer from all its workers at once (18 concurrent
# predictions, 18 bulk_fetch calls) met the peer's cap on one process's connections
# (max_per_peer, 8) and had calls refused; past half of it (a closed connection is counted
# until the peer reads its end), calls wait for a free one within their own timeout.
_SLOTS: dict[Path | str, threading.BoundedSemaphore] = {}
_SLOTS_LOCK = threading.Lock()


def _slot(path: Path | str, size: int) -> threading.BoundedSemaphore:
    with _SLOTS_LOCK:
        slot = _SLOTS.get(path)
        if slot is None:
            slot = _SLOTS[path] = threading.BoundedSemaphore(size)
        return slot


class Client:
    """Calls services over their sockets, or through ``local`` where there is no socket."""

    def __init__(self, cfg: _config.Config | None = None, *, timeout: float | None = None,
                 in_process: str | None = None, local: LocalTransport | None = None,
                 on_fallback: Callable[[str], object] | None = None,
                 keep_connections: bool = True) -> None:
        self.cfg = cfg if cfg is not None else _config.get()
        self.timeout = timeout if timeout is not None else self.cfg["timeout"]
        self.in_process = in_process or self.cfg["in_process"]
        self.reply_limit = self.cfg["reply_limit"]
        self.local = local
        self.on_fallback = on_fallback
        # A service's peers client closes each connection after its call: an open connection
        # keeps the peer from its idle exit, so a peer would live as long as its caller.
        self.keep_connections = keep_connections
        self._conns: dict[Path | str, _Connection] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._fallback_told: set[str] = set()

    def socket_path(self, service: str) -> str:
        """Where ``service`` listens (a string; tests point it elsewhere)."""
        return self.cfg.socket_file(service)

    def call(self, service: str, method: str, params: Any = None, *,
             timeout: float | None = None) -> Any:
        """Call ``method`` on ``service``; returns the result or raises the project's error."""
        path = self.socket_path(service)
        if self.in_process == "always" or (self.in_process == "auto" and not os.path.exists(path)):
            return self._call_local(service, method, params, path, timeout)
        request = {"jsonrpc": "2.0", "method": method, "id": next(self._ids)}
        if params is not None:
            request["params"] = params
        line = encode(request)
        if not self.keep_connections:
            # A connection per call: at most half the peer's cap on one process's
            # connections in flight from this process (see _slot).
            wait = timeout or self.timeout
            started = time.monotonic()
            slot = _slot(path, max(1, self.cfg["max_per_peer"] // 2))
            if not slot.acquire(timeout=wait):
                raise CallTimeout(f"{service}: no free connection within {wait:g}s (this "
                                  "process's calls to it were all in flight)")
            try:
                return self._call_socket(service, path, line,
                                         max(0.1, wait - (time.monotonic() - started)))
            finally:
                slot.release()
        return self._call_socket(service, path, line, timeout)

    def _call_socket(self, service: str, path: Path | str, line: bytes,
                     timeout: float | None) -> Any:
        for resend in (True, False):
            conn = self._connection(service, path)
            with conn.lock:
                try:
                    response = self._roundtrip(conn, line, timeout or self.timeout, service,
                                               resend=resend)
                except _Undelivered:
                    self._drop(path, conn)  # and send it again, once, on a new connection
                    continue
                except BaseException:
                    self._drop(path, conn)
                    raise
                if not self.keep_connections:
                    self._drop(path, conn)
            break
        if "error" in response:
            raise RPCError.from_json(response["error"])
        return response.get("result")

    # -- sockets ---------------------------------------------------------------------------
    def _connection(self, service: str, path: Path) -> _Connection:
        if not self.keep_connections:
            return self._connect(service, path)  # one per call, never shared
        with self._lock:
            conn = self._conns.get(path)
            if conn is not None and not conn.alive():
                conn.close()
                conn = None
            if conn is None:
                conn = self._conns[path] = self._connect(service, path)
            return conn

    def _connect(self, service: str, path: Path) -> _Connection:
        try:
            return _Connection(path, min(CONNECT_TIMEOUT, self.timeout), self.reply_limit)
        except FileNotFoundError as exc:
            raise ServiceUnavailable(
                f"{service} is not available: no socket at {path} "
                "(is it installed? see `trading status`)") from exc
        except ConnectionRefusedError as exc:
            raise ServiceUnavailable(
                f"{service} refused the connection at {path}: its socket is not "
                "listening (see `trading status`)") from exc
        except (TimeoutError, BlockingIOError) as exc:
            raise CallTimeout(f"{service}: connecting to {path} timed out") from exc
        except PermissionError as exc:
            raise ServiceUnavailable(
                f"{service}: permission denied on {path} (are you in the trading "
                "group?)") from exc
        except OSError as exc:
            raise ServiceUnavailable(f"{service}: cannot connect to {path}: {exc}") from exc

    def _drop(self, path: Path, conn: _Connection) -> None:
        conn.close()
        with self._lock:
            if self._conns.get(path) is conn:
                del self._conns[path]

    def _roundtrip(self, conn: _Connection, line: bytes, timeout: float, service: str, *,
                   resend: bool = False) -> dict:
        deadline = time.monotonic() + timeout
        try:
            conn.sock.settimeout(timeout)
            try:
                conn.sock.sendall(line)
            except BrokenPipeError as exc:
                # The handler shut this connection for reading before our line reached it
                # (draining on its way out: `trading restart`, `systemctl stop`): it read and
                # ran nothing of it (a line without its newline is never dispatched), so it is
                # safe to send again, even a call that is not idempotent. A new connection
                # waits in the socket's backlog and is served by the next process.
                if resend:
                    raise _Undelivered from exc
                raise
            while not conn.ready:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                conn.sock.settimeout(remaining)
                chunk = conn.sock.recv(65536)
                if not chunk:
                    raise ServiceUnavailable(
                        f"{service} closed the connection before answering (it may have "
                        f"crashed; see `trading logs {service}`)")
                conn.ready.extend(line for line in conn.lines.feed(chunk) if line.strip())
            return decode(conn.ready.pop(0).decode("utf-8"))
        except LineTooLong as exc:
            raise ServiceUnavailable(
                f"{service} sent an answer longer than {self.reply_limit} bytes (the "
                "reply_limit setting); ask for less, e.g. fewer symbols or a shorter period"
            ) from exc
        except TimeoutError as exc:
            raise CallTimeout(f"{service} did not answer within {timeout:g}s") from exc
        except (ConnectionResetError, BrokenPipeError) as exc:
            raise ServiceUnavailable(
                f"{service} dropped the connection ({exc.strerror}; it may have crashed; "
                f"see `trading logs {service}`)") from exc
        except ValueError as exc:
            raise ServiceUnavailable(f"{service} sent a malformed answer: {exc}") from exc

    # -- in-process --------------------------------------------------------------------------
    def _call_local(self, service: str, method: str, params: Any, path: Path,
                    timeout: float | None = None) -> Any:
        if self.local is None:
            raise ServiceUnavailable(f"{service} is not available: no socket at {path} and no "
                                     "in-process fallback in this client")
        with self._lock:
            first = service not in self._fallback_told
            self._fallback_told.add(service)
        if first and self.on_fallback is not None and self.in_process == "auto":
            try:
                self.on_fallback(service)
            except BaseException:  # a refusal: ask again on the next call, never run it here
                with self._lock:
                    self._fallback_told.discard(service)
                raise
        return self.local.call(self, service, method, params, timeout)

    def close(self) -> None:
        with self._lock:
            for conn in self._conns.values():
                conn.close()
            self._conns.clear()
        if self.local is not None:
            self.local.close()
