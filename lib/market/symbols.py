"""Symbol validation and normalisation: the one gate every symbol passes before use.

A symbol reaches SQL, file names (``csv:DIR`` reads ``DIR/<symbol>.csv``) and Yahoo, so it is
checked against a strict pattern first, and anything else is refused with an
:class:`~trading.errors.InvalidSymbol` naming it; nothing is fetched or stored for it.

Accepted: ASX codes with or without the suffix (``cba``, ``CBA``, ``CBA.AX`` -> ``CBA.AX``;
1 to 6 letters or digits, as hybrids like ``CBAPM`` have), and indices (``^AXJO``).
"""

from __future__ import annotations

from trading.errors import InvalidSymbol

MAX_LENGTH = 12
# [A-Z0-9], checked as a set rather than a regex: ``re`` (with ``enum``) is several ms of
# every cold start, and every handler validates symbols.
_ALNUM = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


def _alnum(s: str, most: int) -> bool:
    """``s`` is 1 to ``most`` characters of A-Z and 0-9 (the pattern ``[A-Z0-9]{1,most}``)."""
    return 0 < len(s) <= most and _ALNUM.issuperset(s)


def normalize(symbol: object) -> str:
    """``cba`` -> ``CBA.AX``; ``^axjo`` -> ``^AXJO``; anything else raises InvalidSymbol."""
    if not isinstance(symbol, str):
        raise InvalidSymbol(f"a symbol must be a string, got {type(symbol).__name__}",
                            symbol=repr(symbol)[:40])
    s = symbol.strip().upper()
    shown = symbol[:40]
    if not s:
        raise InvalidSymbol("empty symbol", symbol=shown)
    if len(s) > MAX_LENGTH:
        raise InvalidSymbol(f"symbol {shown!r} is too long (at most {MAX_LENGTH} characters)",
                            symbol=shown)
    if s.startswith("^") and _alnum(s[1:], 10):
        return s
    code = s[:-3] if s.endswith(".AX") else s
    if _alnum(code, 6):
        return code + ".AX"
    raise InvalidSymbol(f"invalid symbol {shown!r}: expected an ASX code like CBA or CBA.AX, "
                        "or an index like ^AXJO", symbol=shown)


def normalize_all(symbols: object) -> list[str]:
    """A list of symbols, each normalised, duplicates dropped (order kept)."""
    if isinstance(symbols, str):
        symbols = [symbols]
    if not isinstance(symbols, list) or not symbols:
        raise InvalidSymbol("symbols must be a non-empty list of strings", symbol="")
    out: list[str] = []
    for s in symbols:
        n = normalize(s)
        if n not in out:
            out.append(n)
    return out


def is_index(symbol: str) -> bool:
    return symbol.startswith("^")
