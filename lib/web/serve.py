"""Serving the dashboard: uvicorn on the socket systemd passed (or one bound by hand), until idle.

``trading-web`` (:mod:`trading.web.__main__`) is what ``trading-web.service`` runs: systemd
holds the listening socket (``trading-web.socket``, ``Accept=no``) and starts the process on
the first connection; :func:`main` adopts that socket (``LISTEN_FDS``; TCP or a Unix path)
and hands it to uvicorn with the Starlette app (:mod:`trading.web.app`). ``trading web`` binds
one itself and serves in the foreground.

**Idle exit without losing a request.** uvicorn's own shutdown closes a connection whose
request has not been parsed yet without answering it, so a connection accepted between the
decision to exit and the listener's close would be dropped. :class:`IdleServer` therefore
never decides with the listener open: when nothing has been connected for ``idle_exit``
seconds it first closes its listener (systemd keeps its own copy: what arrives from now on
waits in the backlog for the next instance), lets the event loop finish any accept the kernel
had already completed, and exits only once every connection it did accept has been answered
and closed. A request arriving during the exit is served either by this process (accepted
before the close) or by the next one (after it), never by neither.

**What one client cannot do to the others** (hold a connection, take every descriptor,
fill the journal): :mod:`trading.web.limits`, which :func:`make_server` puts in uvicorn's
place where uvicorn has no bound of its own.

Refusals: a listener on a non-loopback address needs ``web.token`` (else exit status 2 and
one log line saying what to set). Who else can open it is the address's business
(:mod:`trading.web.audience`): the installed default is a Unix socket that only its owner and
group can open; a loopback port is open to every local account, which ``trading web`` says
when it binds one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from trading.errors import ConfigError

logger = logging.getLogger(__name__)

DEFAULT_LISTEN = "127.0.0.1:8787"


# -- sockets --------------------------------------------------------------------------------
def adopt_listener(environ: Mapping[str, str] | None = None) -> socket.socket | None:
    """The stream socket systemd passed (TCP or Unix), or None when not socket-activated."""
    env = os.environ if environ is None else environ
    if "LISTEN_FDS" not in env:
        return None
    from trading.runtime.activation import listen_fds

    fds = sorted(listen_fds(env))  # checks LISTEN_PID and unsets the variables
    if len(fds) != 1:
        raise ConfigError(f"expected one socket from systemd, got {len(fds)}")
    sock = socket.socket(fileno=fds[0])  # family and type detected from the descriptor
    if sock.type != socket.SOCK_STREAM:
        raise ConfigError("the socket systemd passed is not a stream socket")
    return sock


def bind(listen: str, backlog: int = 128) -> socket.socket:
    """Listen on ``HOST:PORT`` (``[::1]:PORT`` for IPv6) or a Unix socket path."""
    if listen.startswith("/"):
        from trading.runtime.activation import bind_unix

        return bind_unix(Path(listen), backlog)
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"web.listen {listen!r}: expected HOST:PORT or /path/to.sock")
    host = host.strip("[]") or "127.0.0.1"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, int(port)))
    except OSError:
        sock.close()
        raise
    sock.listen(backlog)
    return sock


def describe(sock: socket.socket) -> str:
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return name if isinstance(name, str) else name.decode(errors="replace")
    host, port = name[0], name[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_loopback(sock: socket.socket) -> bool:
    """True for a Unix socket or a loopback address; a wildcard (0.0.0.0, ::) is not."""
    if sock.family == socket.AF_UNIX:
        return True
    import ipaddress

    address = ipaddress.ip_address(sock.getsockname()[0])
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def check_exposure(sock: socket.socket, token: str) -> None:
    """Refuse a non-loopback listener without a token (ConfigError says what to set)."""
    if not token and not is_loopback(sock):
        raise ConfigError(
            f"refusing to serve the dashboard on {describe(sock)} without a token: set "
            "web.token (TRADING_WEB_TOKEN) or listen on 127.0.0.1 (an SSH tunnel reaches it)")


# -- the server ---------------------------------------------------------------------------
def _uvicorn():
    import uvicorn

    return uvicorn


def make_server(app, *, idle_exit: float | None,
                notify: Callable[[str], object] = lambda _: None,
                watchdog_s: float | None = None, clock: Callable[[], float] = time.monotonic,
                request_timeout: float | None = None, max_connections: int | None = None):
    """An :class:`IdleServer` for ``app``: h11 bounded by a :class:`~trading.web.limits.Gate`, plain asyncio, no
    lifespan, no access log (each choice also spares an import on the cold start).
    ``request_timeout`` and ``max_connections``: see :mod:`trading.web.limits` (its
    ``REQUEST_TIMEOUT_S``; :func:`~trading.web.limits.connection_cap`)."""
    from trading.web.limits import (BACKLOG, REQUEST_TIMEOUT_S, Gate, bounded_protocol,
                                    connection_cap)

    uvicorn = _uvicorn()
    gate = Gate(max_connections=max_connections or connection_cap(),
                request_timeout=request_timeout or REQUEST_TIMEOUT_S)
    config = uvicorn.Config(app, http=bounded_protocol(gate), ws="none", loop="asyncio",
                            lifespan="off", interface="asgi3", log_config=None,
                            access_log=False, server_header=False, proxy_headers=False,
                            timeout_keep_alive=5, timeout_graceful_shutdown=5,
                            backlog=BACKLOG,
                            # A backstop: the gate keeps the count at the cap.
                            limit_concurrency=gate.max_connections + 1)
    return _idle_server_class()(config, idle_exit=idle_exit, notify=notify,
                                watchdog_s=watchdog_s, clock=clock)


_IDLE_SERVER = None


def _idle_server_class():
    """:class:`IdleServer`, defined on first use so that importing this module costs no uvicorn."""
    global _IDLE_SERVER
    if _IDLE_SERVER is not None:
        return _IDLE_SERVER
    uvicorn = _uvicorn()

    class IdleServer(uvicorn.Server):
        """uvicorn's server that exits after ``idle_exit`` seconds with no connection, closing
        its listener before it decides (see the module docstring)."""

        def __init__(self, config, *, idle_exit, notify, watchdog_s, clock) -> None:
            super().__init__(config)
            self.idle_exit = idle_exit
            self.notify = notify
            self.watchdog_s = watchdog_s
            self.clock = clock
            self.last_busy = clock()
            self.last_ping = clock()
            self.draining = False

        async def startup(self, sockets=None) -> None:
            await super().startup(sockets)
            self.notify("READY=1")

        def busy(self) -> bool:
            return bool(self.server_state.connections or self.server_state.tasks)

        async def on_tick(self, counter: int) -> bool:
            if await super().on_tick(counter):
                return True
            now = self.clock()
            if self.watchdog_s and now - self.last_ping >= self.watchdog_s / 2:
                self.notify("WATCHDOG=1")
                self.last_ping = now
            if self.busy():
                self.last_busy = now
                return False
            if self.draining:
                return True  # everything accepted before the close has been answered
            if self.idle_exit is None or now - self.last_busy < self.idle_exit:
                return False
            # Idle: stop accepting first; then let any accept the kernel already completed
            # reach its protocol, and serve it before exiting (the next ticks decide).
            logger.info("idle for %.0f s: closing the listener and exiting", self.idle_exit)
            self.notify("STOPPING=1")
            for server in self.servers:
                server.close()
            self.draining = True
            for _ in range(5):
                await asyncio.sleep(0.01)
            return not self.busy()

        async def shutdown(self, sockets=None) -> None:
            app = self.config.app
            stopping = getattr(getattr(app, "state", None), "stopping", None)
            if stopping is not None:
                stopping.set()  # server-sent event streams end instead of holding the exit
            await super().shutdown(sockets)

    _IDLE_SERVER = IdleServer
    return IdleServer


def serve(app, sock: socket.socket, *, idle_exit: float | None,
          notify: Callable[[str], object] = lambda _: None,
          watchdog_s: float | None = None) -> int:
    """Serve ``app`` on the listening ``sock`` until idle (or a signal); returns the exit status."""
    from trading.web.limits import quiet_floods

    quiet_floods()
    server = make_server(app, idle_exit=idle_exit, notify=notify, watchdog_s=watchdog_s)
    sock.setblocking(False)
    asyncio.run(server.serve(sockets=[sock]))
    return 0


# -- entry points -----------------------------------------------------------------------
def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None, *,
         own_logging: bool = True, registry: Callable[[str], type] | None = None,
         services: Sequence[str] = (), announce: Callable[[str], object] | None = None) -> int:
    """``trading-web [--listen ADDR] [--idle-exit S]``: under systemd, serve the
    passed socket until idle; by hand, bind ``--listen`` (default ``web.listen``) and say
    where it is and who can open it (through ``announce``, else the log).

    ``own_logging``: set logging up here, as an entry point does; ``trading web`` passes False,
    since the CLI set up its own at its entry point (logging is set up once per process).
    ``registry`` and ``services``: the handlers' registry, which the entry point gives (see
    :class:`trading.web.data.Dashboard`)."""
    import argparse

    from trading import config as _config
    from trading.runtime.activation import setup_logging

    parser = argparse.ArgumentParser(prog="trading-web")
    parser.add_argument("--listen", help="HOST:PORT or a Unix socket path, when not "
                        "socket-activated (default: web.listen)")
    parser.add_argument("--idle-exit", type=float,
                        help="seconds idle before exiting (default: idle_exit; 0: never)")
    args = parser.parse_args(argv)
    env = os.environ if environ is None else environ
    activated = "LISTEN_FDS" in env
    try:
        cfg = _config.get()
    except ConfigError as exc:
        print(f"trading-web: {exc}", file=sys.stderr)
        if activated:
            _refuse_passed(env, f"the dashboard cannot start: {exc}")
        return 2
    if own_logging:
        setup_logging("web", cfg["log_level"])
    sock = None
    try:
        sock = adopt_listener(env) if activated else bind(args.listen or cfg["web.listen"])
        check_exposure(sock, cfg["web.token"])
    except ConfigError as exc:
        logger.error("%s", exc)
        if activated and sock is not None:
            refuse_pending(sock, f"the dashboard cannot start: {exc}")
        return 2
    except OSError as exc:
        logger.error("cannot listen on %s: %s", args.listen or cfg["web.listen"], exc)
        return 1
    idle = args.idle_exit if args.idle_exit is not None else (cfg["idle_exit"] if activated
                                                              else 0)
    notify = _notify if env.get("NOTIFY_SOCKET") else (lambda _: None)
    watchdog = int(env["WATCHDOG_USEC"]) / 1e6 if env.get("WATCHDOG_USEC") else None
    from trading.web.app import create_app

    try:
        app = create_app(cfg, cache_dir=cfg.cache_dir / "web-templates", registry=registry,
                         services=services)
    except Exception as exc:  # noqa: BLE001 - said to the waiting browsers, then logged
        if activated:
            refuse_pending(sock, f"the dashboard cannot start: {type(exc).__name__}: {exc}")
        raise
    where = describe(sock)
    logger.info("serving the dashboard on %s%s", where,
                f" (idle exit after {idle:g} s)" if idle else "")
    if not activated:  # by hand (`trading web`): who can open it and how to reach it
        from trading.web import audience

        for line in (audience.reach(where, user=audience.who_am_i(), host=os.uname().nodename),
                     audience.who(where, scope="hand", token=bool(cfg["web.token"]))):
            (announce or logger.info)(line)
    try:
        return serve(app, sock, idle_exit=idle or None, notify=notify, watchdog_s=watchdog)
    finally:
        app.state.dashboard.close()
        if not activated and sock.family == socket.AF_UNIX:
            try:
                Path(where).unlink()  # we bound it; a systemd-owned path is never unlinked
            except OSError:
                pass


def refuse_pending(sock: socket.socket, message: str, limit: int = 1024) -> int:
    """Answer the connections already waiting with a 503 that says why, and close them.

    A dashboard that cannot start tells the browsers that started it, and leaves nothing
    queued for systemd to start it again for: its unit has no start limit, like the JSON-RPC
    services' (:func:`trading.runtime.activation.refuse_pending`), so a broken configuration
    never fails the socket for everyone. Each request is read (what has arrived) before the
    answer, so closing does not reset a connection with unread bytes. Returns how many."""
    body = (message.replace("\n", " ")[:2000] + "\n").encode()
    answer = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
              + f"Content-Length: {len(body)}\r\n".encode()
              + b"Retry-After: 30\r\nConnection: close\r\n\r\n" + body)
    answered = 0
    sock.setblocking(False)
    while answered < limit:
        try:
            conn, _ = sock.accept()
        except OSError:  # none left (BlockingIOError), or the socket is gone
            break
        answered += 1
        try:
            conn.settimeout(0.2)
            try:
                conn.recv(65536)
            except OSError:
                pass
            conn.sendall(answer)
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            conn.close()
    return answered


def _refuse_passed(env: Mapping[str, str], message: str) -> None:
    try:
        sock = adopt_listener(env)
    except (ConfigError, OSError):
        return
    if sock is not None:
        refuse_pending(sock, message)


def _notify(state: str) -> None:
    from trading.runtime.activation import sd_notify

    sd_notify(state)
