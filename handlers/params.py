"""The rules every service applies to its parameters, in one place.

A bad parameter is an :class:`~trading.errors.InvalidParams` (or
:class:`~trading.errors.InvalidSymbol`) naming the parameter and what would be accepted. A list
of symbols is checked per symbol: the valid ones are served and each bad one gets an entry in
the answer's ``errors`` map, keyed by the symbol as given, made by the error itself
(:meth:`~trading.errors.TradingError.entry`).
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs ~3 ms of every cold start; annotations are strings
if TYPE_CHECKING:
    import datetime as dt
    from typing import Any

from trading.errors import InvalidParams, RPCError
from trading.market.symbols import normalize

MAX_SYMBOLS = 1000          # symbols per bulk call, whichever service takes them
MAX_KEY_CHARS = 40          # a bad symbol is echoed back at most this long
MAX_SOURCE_CHARS = 4096     # a source spec: csv:DIR with DIR up to PATH_MAX
SOURCE_HELP = "yahoo, sample or csv:DIR"


def symbol(value: Any) -> str:
    """One symbol, normalized (``cba`` -> ``CBA.AX``); InvalidSymbol when it is not one."""
    return normalize(value)


def symbol_list(value: Any, *, default: list[str] | None = None, name: str = "symbols",
                limit: int = MAX_SYMBOLS) -> list[Any]:
    """A non-empty list (a single string counts as a list of one) of at most ``limit``
    items, not yet normalized; ``default`` stands in for None."""
    if value is None and default is not None:
        value = default
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise InvalidParams(f"{name} must be a non-empty list of strings")
    if len(value) > limit:
        raise InvalidParams(f"at most {limit} {name} per call, got {len(value)}", limit=limit)
    return value


def key(given: Any) -> str:
    """How a symbol as given is named in an ``errors`` map."""
    text = given if isinstance(given, str) else repr(given)
    return text[:MAX_KEY_CHARS]


def symbols(value: Any, *, default: list[str] | None = None,
            limit: int = MAX_SYMBOLS) -> tuple[dict[str, list[Any]], dict[str, Any]]:
    """Normalize a list of symbols: ``({SYMBOL: [as given, ...]}, {as given: error entry})``.

    The first map keeps the order of first appearance and merges spellings of one symbol
    (``cba`` and ``CBA.AX``); it is built in one pass, linear in the list's length."""
    given: dict[str, list[Any]] = {}
    errors: dict[str, Any] = {}
    for raw in symbol_list(value, default=default, limit=limit):
        try:
            given.setdefault(normalize(raw), []).append(raw)
        except RPCError as exc:
            errors[key(raw)] = exc.entry()
    return given, errors


def source(value: Any) -> str | None:
    """A source spec (None: the configured one). Its type and length are checked here (a
    path longer than PATH_MAX names no folder; a NUL byte names none either); the source
    layer resolves it and says what else is wrong with it."""
    if value is not None and not isinstance(value, str):
        raise InvalidParams(f"source must be a string: {SOURCE_HELP}")
    if value is not None and len(value) > MAX_SOURCE_CHARS:
        raise InvalidParams(f"source is {len(value):,} characters long; at most "
                            f"{MAX_SOURCE_CHARS} are accepted ({SOURCE_HELP})",
                            limit=MAX_SOURCE_CHARS)
    if value is not None and "\0" in value:
        raise InvalidParams(f"source contains a NUL character: {SOURCE_HELP}")
    return value


def date(name: str, value: Any) -> dt.date | None:
    """An ISO date (None stays None), between 1900 and 2100."""
    if value is None:
        return None
    import datetime as dt  # not at the top: a cold start that reads no date never pays

    try:
        day = dt.date.fromisoformat(value)
    except (TypeError, ValueError) as exc:
        raise InvalidParams(f"{name} must be a date like 2025-01-31, got {str(value)[:40]!r}"
                            ) from exc
    if not dt.date(1900, 1, 1) <= day <= dt.date(2100, 12, 31):
        raise InvalidParams(f"{name} must be a date between 1900 and 2100, got {value}")
    return day


def whole(name: str, value: Any, low: int, high: int) -> int:
    """A whole number in ``[low, high]`` (a bool is not a number here)."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidParams(f"{name} must be a whole number from {low} to {high}")
    return value


def number(name: str, value: Any, low: float, high: float) -> float:
    """A number in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise InvalidParams(f"{name} must be a number from {low:g} to {high:g}")
    return float(value)


def choice(name: str, value: Any, choices) -> str:
    """One of ``choices`` (strings); anything else, of any type, is InvalidParams."""
    if not isinstance(value, str) or value not in choices:
        shown = str(value)[:40] if isinstance(value, str) else type(value).__name__
        raise InvalidParams(f"{name} {shown!r} not supported; use {', '.join(choices)}")
    return value


def flag(name: str, value: Any) -> bool:
    """True or false, nothing else (not 0/1, not a string)."""
    if not isinstance(value, bool):
        raise InvalidParams(f"{name} must be true or false")
    return value


def predictor(value: Any) -> str | None:
    """A predictor named as the ``predictor`` setting names one (``module:Name``), or None."""
    if value is None:
        return None
    from trading.config import SETTINGS

    try:
        return SETTINGS["predictor"].parse(value)
    except (TypeError, ValueError) as exc:
        raise InvalidParams(f"predictor {value!r}: {exc}") from exc
