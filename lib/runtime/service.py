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
from trading.runtime.protocol import Dispatcher, Encoded, Method, encode_text, rpc

_PAGE = os.sysconf("SC_PAGE_SIZE")


RSS_MAX_AGE = 0.1  # seconds health_check reuses a reading of its RSS (a /proc read, ~1 us)

_statm: list[int] = []  # one open descriptor, read with pread: no open/close per call
_rss_memo: tuple[int, float, int] = (-1, 0.0, 0)  # (pid, when, bytes), swapped whole


def rss_bytes(max_age: float = 0.0, pid: int | None = None) -> int:
    """Resident memory of this process, from /proc (no psutil needed). A reading this process
    took less than ``max_age`` seconds ago is returned again (0: always read). ``pid`` is
    ``os.getpid()``, passed by a caller that has it already."""
    global _rss_memo
    if pid is None:
        pid = os.getpid()  # a forked child has its own memory and must not reuse the parent's
    now = time.monotonic()
    memo = _rss_memo
    if memo[0] == pid and now - memo[1] < max_age:
        return memo[2]
    try:
        if not _statm or _statm[1] != pid:
            _statm[:] = [os.open("/proc/self/statm", os.O_RDONLY | os.O_CLOEXEC), pid]
        value = int(os.pread(_statm[0], 128, 0).split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0
    _rss_memo = (pid, now, value)
    return value


def _fields_json(part: dict[str, Any]) -> str:
    """A dict's members as JSON text, without the braces: its own text when it brings one."""
    text = part.json if type(part) is Encoded else None
    return (text if text is not None else encode_text(part))[1:-1]


class Stats:
    """Counters the runtime keeps and ``health_check`` reports; updated under a lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = 0
        self.errors = 0
        self.connections = 0
        self.open_connections = 0
        self.in_flight = 0


def _no_notify(_state: str) -> None:
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
        self.notify = notify or _no_notify
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
        self._health_json: tuple[str, str] | None = None  # health_check's fixed text
        self._health_tail: tuple[dict, dict, str] | None = None  # and its memoized parts
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
        """Liveness and counters: service, status, pid, uptime, requests served, memory, version."""
        pid = os.getpid()
        uptime = round((time.monotonic() - self.started) * 1000) / 1000  # round(x, 3), faster
        requests = self.stats.requests
        rss = rss_bytes(RSS_MAX_AGE, pid)
        store, own = self.store_health(), self.health()
        answer = Encoded(service=self.name, status="ok", pid=pid, uptime_s=uptime,
                         requests_served=requests, rss_bytes=rss, version=__version__)
        answer.update(store)
        answer.update(own)
        # Its JSON is written here, the fixed fields' text made once per process: encoding
        # the whole answer was most of a warm health_check's time in the handler (json's C
        # encoder costs about 0.15 us a field on Python 3.11). A part that is memoized comes
        # as an Encoded dict with its own text, made with the memo (the store's verdict,
        # market-data's cache figures); the rest go through the encoder on every call.
        # Where a field would replace another, the whole answer does.
        answer.json = None
        if len(answer) == 7 + len(store) + len(own):
            memo = self._health_tail  # the same two Encoded memos as last time: same text
            if memo is not None and memo[0] is store and memo[1] is own:
                tail = memo[2]
            else:
                try:
                    tail = "," + _fields_json(store) if store else ""
                    if own:
                        tail += "," + _fields_json(own)
                except (TypeError, ValueError, RecursionError):
                    return answer  # NaN, say: the general encoder says what becomes of it
                if type(store) is Encoded and type(own) is Encoded:  # never changed after
                    self._health_tail = (store, own, tail)
            head = self._health_json
            if head is None:
                head = self._health_json = (
                    '{"service":' + encode_text(self.name) + ',"status":"ok","pid":',
                    ',"version":' + encode_text(__version__))
            answer.json = (f'{head[0]}{pid},"uptime_s":{uptime!r},"requests_served":{requests},'
                           f'"rss_bytes":{rss}{head[1]}{tail}}}')
        return answer

    def store_health(self) -> dict[str, Any]:
        """``store: ok|degraded`` (with ``store_cause`` and ``store_error``), from the store's
        own cheap, memoized check (:meth:`trading.runtime.store.Store.health`). A store not
        created yet is ok: the first request that needs it creates it. (On every
        health_check: kept to an attribute read and the store's memo on the common path.)"""
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
