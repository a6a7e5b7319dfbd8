"""The base class of a service, and the context it is built with.

A service is a small object whose ``@rpc`` methods are its wire methods. Like a
``socketserver`` handler, it gets everything from outside in one argument, a
:class:`Context`: the configuration, a client for its peers, a notify function (systemd's
``sd_notify`` under the runtime, a no-op elsewhere) and a store factory. The runtime
(:func:`trading.runtime.activation.run`) builds the production context; a test builds one
with fakes. No service reaches for a process-global.

The runtime (:class:`trading.runtime.server.Server`) and the in-process transport
(:class:`trading.runtime.client.LocalTransport`) use a service the same way:

- ``Service(context)`` once. Construction must be cheap: no heavy imports and no I/O, because
  it is paid on every cold start. Open stores and load libraries lazily, on the path that
  needs them (:attr:`Service.store` does this for the store).
- :meth:`dispatcher` once, which collects the ``@rpc`` methods.
- the ``@rpc`` methods, once per request, from the runtime's worker threads, so a method must
  be safe to run concurrently with itself and the others.
- :meth:`health` for extra ``health_check`` fields, :meth:`status` for systemd's ``STATUS=``.
  ``health_check`` always reports ``store: ok|degraded`` (:meth:`store_health`).
- :meth:`close` once, when the process exits; a subclass that overrides it calls ``super()``.

Every service answers ``health_check`` and ``rpc.discover``; subclasses add their own methods.
"""

from __future__ import annotations

import os
import threading
import time
TYPE_CHECKING = False  # typing costs ~3 ms of every cold start; annotations are strings
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

from trading import __version__
from trading import config as _config
from trading.errors import RPCError, Unavailable
from trading.runtime.protocol import Dispatcher, Method, rpc

_PAGE = os.sysconf("SC_PAGE_SIZE")


_RSS_MAX_AGE_S = 1.0  # health_check's rss_bytes is at most this old
_statm: dict[int, int] = {}  # pid -> a descriptor of its /proc/self/statm


def rss_bytes() -> int:
    """Resident memory of this process, from /proc (no psutil needed); 0 where unreadable.

    The file stays open and is read with ``pread``: opening it is most of the cost, about
    7 us of every health_check (10 us to 2.5 us). /proc/self is resolved when the file is
    opened, so a forked child opens its own (hence the pid)."""
    pid = os.getpid()
    try:
        fd = _statm.get(pid)
        if fd is None:
            fd = _statm[pid] = os.open("/proc/self/statm", os.O_RDONLY | os.O_CLOEXEC)
        return int(os.pread(fd, 128, 0).split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


class Stats:
    """Counters the runtime keeps and ``health_check`` reports; updated under a lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = 0
        self.errors = 0
        self.connections = 0
        self.open_connections = 0
        self.in_flight = 0


def no_notify(_state: str) -> None:
    """The notify of a service run without systemd: does nothing."""
    return None


_current = threading.local()  # the cancel flag of the request this thread is answering


def set_current_cancel(flag: threading.Event | None) -> threading.Event | None:
    """Set this thread's request cancel flag (the server does, around each request); returns
    the previous one, to restore."""
    previous = getattr(_current, "cancel", None)
    _current.cancel = flag
    return previous


class _NoPeers:
    """The peers of a service built without any: every call says so."""

    def call(self, service: str, method: str, params: Any = None, *,
             timeout: float | None = None) -> Any:
        raise Unavailable(f"{service} is not reachable: this service was built without peers")


class Context:
    """What a service is built with; every part has a default that needs no systemd.

    - ``config``: the :class:`trading.config.Config` in effect (default: the environment's).
    - ``peers``: an object with ``call(service, method, params=None, *, timeout=None)``, such
      as a :class:`trading.runtime.client.Client`, for calling other services.
    - ``notify``: sends a systemd notify state (``"STATUS=..."``).
    - ``store_factory``: opens the store; called at most once per service, on first use.
    """

    def __init__(self, config: _config.Config | None = None, *, peers: Any = None,
                 notify: Callable[[str], object] | None = None,
                 store_factory: Callable[[], Any] | None = None) -> None:
        self.config = config if config is not None else _config.get()
        self.peers = peers if peers is not None else _NoPeers()
        self.notify = notify or no_notify
        self.store_factory = store_factory or self._open_store

    def _open_store(self):
        from trading.runtime.store import Store

        return Store(self.config.db_file)


class Service:
    """Base class; see the module docstring for what the runtime calls and when."""

    name = "service"

    def __init__(self, context: Context | None = None) -> None:
        self.context = context if context is not None else Context()
        self.config = self.context.config
        self.peers = self.context.peers
        self.notify = self.context.notify
        self.started = time.monotonic()
        self._rss = (0, -_RSS_MAX_AGE_S)  # (bytes, when read): health_check's memory figure
        self.stats = Stats()
        self._store = None
        self._store_lock = threading.Lock()

    @property
    def cancelled(self) -> bool:
        """True when the client of the request being answered on this thread has hung up:
        a long method checks it between steps and stops (it is never true in-process)."""
        flag = getattr(_current, "cancel", None)
        return flag is not None and flag.is_set()

    @property
    def store(self):
        """The store, opened on first use (a cold start that never needs it never opens it)."""
        with self._store_lock:
            if self._store is None:
                self._store = self.context.store_factory()
            return self._store

    def dispatcher(self) -> Dispatcher:
        d = Dispatcher()
        for klass in reversed(type(self).__mro__):
            for attr, value in vars(klass).items():
                meta = getattr(value, "__rpc__", None)
                if meta is not None:
                    func = getattr(self, attr)
                    d.methods[meta["name"]] = Method(meta["name"], func, meta["positional"])
        self._methods = d.methods
        return d

    def health(self) -> dict[str, Any]:
        """Extra fields for ``health_check``; services override this."""
        return {}

    def status(self) -> str:
        s = self.stats
        return (f"serving: {s.open_connections} connections, {s.in_flight} in flight, "
                f"{s.requests} requests served")

    def close(self) -> None:
        """Release what the service opened; called once at exit."""
        with self._store_lock:
            store, self._store = self._store, None
        if store is not None:
            store.close()

    @rpc
    def health_check(self) -> dict[str, Any]:
        """Liveness and counters: service, status, pid, uptime, requests served, memory, version,
        and the configuration file as it was loaded (``config_loaded``: its mtime and CRC-32,
        or ``missing``), which ``trading status`` compares with the file now."""
        return {"service": self.name, "status": "ok", "pid": os.getpid(),
                "uptime_s": round(time.monotonic() - self.started, 3),
                "requests_served": self.stats.requests, "rss_bytes": self._memory(),
                "version": __version__, **self.store_health(),
                "config_loaded": {"file": self.config.file,
                                  **(getattr(self.config, "loaded", None) or {"missing": True})},
                **self.health()}

    def _memory(self) -> int:
        # Read at most once a second: reading /proc/self/statm walks the process's memory
        # map, about 10 us of a 50 us warm round trip when every health_check paid it.
        value, read_at = self._rss
        now = time.monotonic()
        if now - read_at >= _RSS_MAX_AGE_S:
            value = rss_bytes()
            self._rss = (value, now)
        return value

    def store_health(self) -> dict[str, Any]:
        """``store: ok|degraded`` (with ``store_cause`` and ``store_error``), from the store's
        own cheap, memoized check (:meth:`trading.runtime.store.Store.health`). A store not
        created yet is ok: the first request that needs it creates it."""
        store = self._store
        if store is None:
            if not os.path.exists(self.config.db_file):
                return {"store": "ok"}
            try:
                store = self.store
            except RPCError as exc:  # a factory that failed outright
                return {"store": "degraded", "store_cause": exc.data.get("cause", "unavailable"),
                        "store_error": exc.message}
        check = getattr(store, "health", None)
        return check() if check is not None else {"store": "ok"}

    @rpc(name="rpc.discover")
    def discover(self) -> dict[str, Any]:
        """This service's methods with their parameter names and one-line docs."""
        methods = getattr(self, "_methods", None) or self.dispatcher().methods
        return {"service": self.name, "version": __version__,
                "methods": [m.describe() for m in sorted(methods.values(), key=lambda m: m.name)]}
