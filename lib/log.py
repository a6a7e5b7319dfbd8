"""Loggers that cost nothing until a record is emitted.

``import logging`` is about 7 ms of a cold start (``traceback``, ``string``, ``weakref``...),
paid on every socket activation although a healthy handler may never log before its first
answer. So the modules on the handlers' cold path write::

    from trading import log
    logger = log.getLogger(__name__)

and use ``logger`` as a :class:`logging.Logger` (``logger.info("%s", x)``,
``logger.exception(...)``): the first attribute looked up imports ``logging`` and returns the
real logger's, so a record carries the same logger name, level, caller and format as with
``logging.getLogger(__name__)``.

:func:`configure` is how the entry point sets up logging without importing it: the set-up
runs at once when ``logging`` is loaded already, or else right after ``logging`` is first
imported, by anyone (these proxies, a lazily imported module, the standard library), so the
configuration is in place before any record can be emitted.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing costs ~3 ms of every cold start; annotations are strings
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import ModuleType


class Logger:
    """A stand-in for ``logging.getLogger(name)`` that imports ``logging`` on first use."""

    __slots__ = ("name", "_logger")

    def __init__(self, name: str) -> None:
        self.name = name
        self._logger = None

    def __getattr__(self, attr: str):
        # Returns the real logger's bound method: the call is made from the caller's frame,
        # so findCaller (file, line, function: journald's CODE_* fields) names the caller.
        real = self._logger
        if real is None:
            import logging

            real = self._logger = logging.getLogger(self.name)
        return getattr(real, attr)

    def __repr__(self) -> str:
        return f"<trading.log.Logger {self.name}>"


def getLogger(name: str) -> Logger:  # noqa: N802  (the name logging's callers know)
    return Logger(name)


def configure(apply: Callable[[ModuleType], None]) -> None:
    """Run ``apply(logging)`` now if ``logging`` is loaded, else right after its first import."""
    logging = sys.modules.get("logging")
    if logging is not None:
        apply(logging)
        return
    for finder in sys.meta_path:
        if isinstance(finder, _SetUpOnImport):
            finder.apply = apply  # the latest set-up wins, as a second call would
            return
    sys.meta_path.insert(0, _SetUpOnImport(apply))


class _SetUpOnImport:
    """A meta path finder for ``logging`` alone: it finds the module as the finders after it
    do, and has the loader run ``apply(logging)`` once the module is executed."""

    def __init__(self, apply: Callable[[ModuleType], None]) -> None:
        self.apply = apply

    def find_spec(self, name, path=None, target=None):
        if name != "logging":
            return None
        sys.meta_path.remove(self)  # once: never in the way of any other import
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec = find(name, path, target) if find is not None else None
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None:
            spec.loader = _ThenApply(spec.loader, self.apply)
        return spec

    # importlib.invalidate_caches() calls this on every finder in sys.meta_path.
    def invalidate_caches(self) -> None:
        return None


class _ThenApply:
    """The module's own loader, then the set-up."""

    def __init__(self, loader, apply: Callable[[ModuleType], None]) -> None:
        self._loader = loader
        self._apply = apply

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        module.__loader__ = self._loader  # logging's own loader from now on (source, reload)
        module.__spec__.loader = self._loader
        self._apply(module)

    def __getattr__(self, attr: str):
        return getattr(self._loader, attr)
