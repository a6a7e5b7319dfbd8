"""Symbol validation and normalisation: the one gate every symbol passes before use.

A symbol reaches SQL, file names (``csv:DIR`` reads ``DIR/<symbol>.csv``) and Yahoo, so it is
checked against a strict pattern first, and anything else is refused with an
:class:`~trading.errors.InvalidSymbol` naming it; nothing is fetched or stored for it.

Accepted: ASX codes with or without the suffix (``cba``, ``CBA``, ``CBA.AX`` -> ``CBA.AX``;
1 to 6 letters or digits, as hybrids like ``CBAPM`` have), and indices (``^AXJO``).
"""

from __future__ import annotations

import re

from trading.errors import InvalidSymbol

MAX_LENGTH = 12
_CODE = re.compile(r"[A-Z0-9]{1,6}")
_INDEX = re.compile(r"\^[A-Z0-9]{1,10}")


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
    if _INDEX.fullmatch(s):
        return s
    code = s[:-3] if s.endswith(".AX") else s
    if _CODE.fullmatch(code):
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
