"""Socket activation: serve a service on the socket(s) systemd passed, or on one bound by hand.

systemd owns each listening socket (a ``.socket`` unit with ``Accept=no``) and starts the
handler on the first connection. :func:`run` adopts the passed sockets (``LISTEN_FDS``,
``LISTEN_PID``, ``LISTEN_FDNAMES``, read as ``sd_listen_fds`` reads them) or, run by hand,
binds the path itself; builds the service's production
:class:`~trading.runtime.service.Context`; sets up logging (journald when stderr is the
journal); and hands over to :class:`trading.runtime.server.Server`, which serves until idle.

systemd's two small protocols, ``sd_listen_fds`` and ``sd_notify``, are spoken here (a few
lines each, as libsystemd documents them) rather than through ``systemd.daemon``: one fewer
import on every activation, and the inputs (``environ``) are arguments a test can pass.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path
    from socket import socket as Socket

from trading import log
from trading.runtime.server import Server
from trading.runtime.service import Context, Service, no_notify

logger = log.getLogger(__name__)

SD_LISTEN_FDS_START = 3  # the first passed descriptor (sd_listen_fds(3))


# -- adopting or binding sockets ---------------------------------------------------------
def listen_fds(environ: dict[str, str] | None = None) -> dict[int, str]:
    """The descriptors systemd passed, with their names: ``sd_listen_fds_with_names(1)``.

    Only when ``LISTEN_PID`` is this process (the variables are inherited by children that
    must not take them). The variables are removed either way, and the descriptors made
    close-on-exec, as ``sd_listen_fds(1)`` does."""
    env = os.environ if environ is None else environ
    pid, count, names = (env.pop(var, "") for var in ("LISTEN_PID", "LISTEN_FDS",
                                                       "LISTEN_FDNAMES"))
    try:
        if int(pid) != os.getpid():
            return {}
        count = int(count)
    except ValueError:
        return {}
    names = names.split(":")
    fds = {}
    for i in range(max(count, 0)):
        fd = SD_LISTEN_FDS_START + i
        os.set_inheritable(fd, False)
        fds[fd] = names[i] if i < len(names) and names[i] else "unknown"
    return fds


def adopt_sockets(environ: dict[str, str] | None = None) -> list[Socket]:
    """The listening sockets systemd passed to this process, or [] when there are none.

    Checks ``LISTEN_PID`` against our PID and unsets the variables (a forked child must not
    adopt them again); it is called once."""
    env = os.environ if environ is None else environ
    if "LISTEN_FDS" not in env:
        return []
    socks = []
    for fd, name in sorted(listen_fds(env).items()):
        try:
            s = socket.socket(fileno=fd)
        except OSError as exc:
            logger.warning("ignoring passed fd %d (%s): %s", fd, name, exc)
            continue
        if s.family != socket.AF_UNIX or s.type != socket.SOCK_STREAM:
            logger.warning("ignoring passed fd %d (%s): not a Unix stream socket", fd, name)
            s.detach()
            continue
        socks.append(s)
    return socks


def refuse_pending(sockets: list[Socket], message: str, limit: int = 1024) -> int:
    """Answer the connections already waiting with one JSON-RPC error line and close them: a
    handler that cannot start says why to the clients that started it, and leaves no
    connection queued for systemd to start it again for (the units have no start limit:
    a queued connection would restart it for as long as it waited). Returns how many."""
    import json

    line = (json.dumps({"jsonrpc": "2.0", "id": None,
                        "error": {"code": -32603, "message": message}}) + "\n").encode()
    answered = 0
    for listener in sockets:
        listener.setblocking(False)
        while answered < limit:
            try:
                conn, _ = listener.accept()
            except OSError:  # none left (BlockingIOError), or the socket is gone
                break
            answered += 1
            try:
                conn.settimeout(0.2)
                conn.sendall(line)
            except OSError:
                pass
            finally:
                conn.close()
    return answered


def bind_unix(path: Path | str, backlog: int = 128):
    """Bind and listen on ``path`` ourselves (a service run by hand, not by systemd); a
    ``socket.socket``, which asyncio (the web service) needs."""
    import stat

    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    try:
        stale = stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        stale = False
    if stale:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)  # stale: nobody listens on it
        else:
            raise OSError(f"{path} is already being served by another process")
        finally:
            probe.close()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o117)  # socket file 0660, like the socket units
    try:
        s.bind(path)
    finally:
        os.umask(old)
    s.listen(backlog)
    return s


# -- logging ---------------------------------------------------------------------------
def setup_logging(service: str, level: str = "INFO") -> None:
    """Configure logging once, at the entry point: journald fields when stderr is the journal.

    Applied when ``logging`` is first imported (at once if it is loaded already): a handler
    that answers without logging never pays for it, and every record is emitted under this
    configuration (:func:`trading.log.configure`)."""
    journal, stderr = _stderr_is_journal(), sys.stderr

    def apply(logging) -> None:
        root = logging.getLogger()
        root.setLevel(level.upper() if isinstance(level, str) else level)
        handler: logging.Handler | None = None
        if journal:
            # Applied inside the first `import logging` (maybe mid-request): a failure here
            # must not fail that import and leave logging unconfigured; stderr it is then.
            try:
                from systemd.journal import JournalHandler

                handler = JournalHandler(SYSLOG_IDENTIFIER=f"trading-{service}")
            except Exception:  # noqa: BLE001 - any failure: fall back, never lose the logs
                handler = None
        if handler is None:
            handler = logging.StreamHandler(stderr)
            handler.setFormatter(logging.Formatter(
                f"%(asctime)s trading-{service}[%(process)d] %(levelname)s %(name)s: %(message)s"))
        root.handlers[:] = [handler]

    log.configure(apply)


def _stderr_is_journal() -> bool:
    stream = os.environ.get("JOURNAL_STREAM", "")
    if ":" not in stream:
        return False
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return stream == f"{st.st_dev}:{st.st_ino}"


_notify_socket: list = []  # one datagram socket, made on the first notification


def sd_notify(state: str) -> None:
    """``sd_notify(0, state)``: one datagram to ``$NOTIFY_SOCKET`` (``@`` is the abstract
    namespace). Best effort, as sd_notify is: a manager that is gone is not our failure."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address or address[0] not in "/@":  # libsystemd takes only these (EINVAL else)
        return
    if address[0] == "@":
        address = "\0" + address[1:]
    try:
        if not _notify_socket:
            _notify_socket.append(socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM))
        _notify_socket[0].sendto(state.encode(), address)
    except OSError as exc:
        logger.debug("sd_notify %r failed: %s", state, exc)


# -- command line ------------------------------------------------------------------------
class Args:
    """The handler's options: ``socket`` (a path or None), ``idle_exit`` (seconds or None)."""

    def __init__(self, socket: Path | str | None = None, idle_exit: float | None = None) -> None:
        self.socket = socket
        self.idle_exit = idle_exit


def parse_args(service: str, argv: Sequence[str] | None = None) -> Args:
    """``[--socket PATH] [--idle-exit SECONDS]``. The units pass none, so argparse (~2 ms)
    is imported only when there are arguments to read; help and errors are argparse's."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:
        return Args()
    import argparse

    parser = argparse.ArgumentParser(prog=f"trading-{service}")
    parser.add_argument("--socket", help="bind this path when not socket-activated")
    parser.add_argument("--idle-exit", type=float, help="seconds idle before exiting")
    ns = parser.parse_args(argv)
    if ns.idle_exit is not None and ns.idle_exit != ns.idle_exit:
        parser.error("argument --idle-exit: not a number: nan")  # poll() would wait forever
    return Args(ns.socket, ns.idle_exit)


# -- entry point ------------------------------------------------------------------------
def run(service_cls: type[Service], argv: Sequence[str] | None = None, *,
        registry: Callable[[str], type[Service]] | None = None) -> int:
    """Entry point of ``python -m trading.handlers.<module> [--socket PATH]``.

    Builds the production context: the configuration, a client for the peers (by socket, or
    in-process through ``registry`` where a peer has no socket), systemd's notify, and the
    store at the configured path."""
    from trading import config as _config
    from trading.errors import ConfigError
    from trading.runtime.client import Client, LocalTransport

    args = parse_args(service_cls.name, argv)
    try:
        cfg = _config.get()
    except ConfigError as exc:
        print(f"trading-{service_cls.name}: {exc}", file=sys.stderr)
        refuse_pending(adopt_sockets(), f"trading-{service_cls.name} cannot start: {exc}")
        return 2
    setup_logging(service_cls.name, cfg["log_level"])
    sockets = adopt_sockets()
    bound: str | None = None
    if not sockets:
        bound = os.fspath(args.socket or cfg.socket_file(service_cls.name))
        try:
            sockets = [bind_unix(bound)]
        except OSError as exc:
            logger.error("cannot listen on %s: %s", bound, exc)
            return 1
        logger.info("%s serving on %s (not socket-activated)", service_cls.name, bound)
    notify = sd_notify if os.environ.get("NOTIFY_SOCKET") else no_notify
    peers = Client(cfg, local=LocalTransport(registry) if registry is not None else None,
                   keep_connections=False)
    try:
        service = service_cls(Context(cfg, peers=peers, notify=notify))
    except Exception as exc:  # noqa: BLE001 - said to the clients waiting, then the exit
        logger.exception("%s cannot start", service_cls.name)
        refuse_pending(sockets, f"trading-{service_cls.name} cannot start: {exc}")
        return 1
    from trading.runtime.access import authorizer

    server = Server(
        service, sockets,
        idle_exit=args.idle_exit if args.idle_exit is not None else cfg["idle_exit"],
        conn_idle=cfg["conn_idle"], max_connections=cfg["max_connections"],
        line_limit=cfg["line_limit"], notify=notify,
        request_timeout=cfg["request_timeout"], max_per_peer=cfg["max_per_peer"],
        max_per_user=cfg["max_per_user"],
        drain_timeout=cfg["drain_timeout"], max_batch=cfg["max_batch"],
        batch_reply_limit=cfg["batch_reply_limit"],
        watchdog_usec=int(os.environ["WATCHDOG_USEC"]) if os.environ.get("WATCHDOG_USEC") else None,
        authorize=authorizer(cfg),
    )
    signal.signal(signal.SIGTERM, lambda *_: server.stop())
    signal.signal(signal.SIGINT, lambda *_: server.stop())
    try:
        return server.serve()
    finally:
        service.close()
        peers.close()
        if bound is not None:
            try:
                os.unlink(bound)  # we created it; a systemd-owned path is never unlinked
            except OSError:
                pass
