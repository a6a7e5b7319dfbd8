"""Symbol universes: a named watch list from the configuration, or a file of codes.

``predict``, ``replay``, ``backtest`` and ``train`` take ``--symbols-from NAME_OR_FILE``, so
the ASX 200 is one command rather than 200 arguments. ``NAME`` is a ``[watchlists]`` entry of
the configuration (a list of codes, or the path of a file of codes); anything else is read
as a file.

A file holds codes one per line or several per line separated by commas or spaces, ``#``
starts a comment, and each code passes :func:`trading.market.symbols.normalize` (``cba`` ->
``CBA.AX``), so a file exported from a spreadsheet or copied from the ASX's list works as it
is. A bad code is refused with the file and line that hold it: a universe is resolved
before any work starts, and a typo found after an hour of training helps nobody.

Resolved here, on the client's side: the file is the user's, and the installed services run
sandboxed and may not be allowed to read it; they get the list of symbols.
"""

from __future__ import annotations

import os
TYPE_CHECKING = False  # typing costs ~3 ms of every cold start; annotations are strings
if TYPE_CHECKING:
    from typing import Any

from trading.errors import InvalidParams, InvalidSymbol
from trading.market.symbols import normalize

MAX_FILE_BYTES = 1 << 20  # a megabyte of codes is ~100,000 of them: anything larger is a mistake


def read_codes(path: str, limit: int = MAX_FILE_BYTES) -> list[str]:
    """The symbols in the file at ``path``, normalised, duplicates dropped (order kept).

    Raises InvalidParams naming the file (and the line, for a bad code)."""
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise InvalidParams(f"cannot read the symbols file {path}: {exc.strerror or exc}",
                            path=path) from exc
    if len(data) > limit:
        raise InvalidParams(f"{path}: more than {limit:,} bytes; a file of codes is far "
                            "smaller (is this the right file?)", path=path)
    try:
        text = data.decode("utf-8-sig")  # a spreadsheet's CSV may start with a BOM
    except UnicodeDecodeError as exc:
        raise InvalidParams(f"{path}: not a text file of codes (not UTF-8)", path=path) from exc
    out: dict[str, None] = {}
    for number, line in enumerate(text.splitlines(), 1):
        for code in line.split("#", 1)[0].replace(",", " ").split():
            try:
                out[normalize(code)] = None
            except InvalidSymbol as exc:
                raise InvalidParams(f"{path} line {number}: {exc.message}", path=path,
                                    line=number) from None
    if not out:
        raise InvalidParams(f"{path}: no symbols in it", path=path)
    return list(out)


def resolve(spec: str, cfg: Any) -> list[str]:
    """The symbols of ``spec``: a ``[watchlists]`` name of ``cfg``, else a file path."""
    lists = getattr(cfg, "watchlists", {}) or {}
    if spec in lists:
        value = lists[spec]
        if isinstance(value, str):
            return read_codes(value)
        try:
            return list(dict.fromkeys(normalize(code) for code in value))
        except InvalidSymbol as exc:
            raise InvalidParams(f"watchlists.{spec} in {cfg.file}: {exc.message}") from None
    if not os.path.exists(spec):
        known = ", ".join(sorted(lists)) or "none configured"
        raise InvalidParams(f"{spec!r} is neither a watch list in {cfg.file} (watch lists: "
                            f"{known}) nor a file")
    return read_codes(spec)


def combine(symbols: list[str] | None, spec: str | None, cfg: Any,
            limit: int) -> list[str] | None:
    """The symbols named on the command line, then those of ``spec``, once each; None when
    neither is given (the service's default applies). More than ``limit`` is refused here,
    before anything is fetched."""
    if not spec:
        return list(symbols) if symbols else None
    out = list(dict.fromkeys([*(symbols or []), *resolve(spec, cfg)]))
    if len(out) > limit:
        raise InvalidParams(f"{spec}: {len(out)} symbols; at most {limit} per command")
    return out
