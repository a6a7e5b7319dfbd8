"""``trading chart SYMBOL``: a PNG of the price with SMA20, RSI and MACD, and the stored
predictions marked on it (BUY and SELL triangles, HOLD dots).

Bars come from the market-data service (``get_bars``) and predictions from the prediction
service (``history``), through the same client as every command, so the chart shows what the
services hold. A prediction service that cannot answer costs the markers, not the chart: the
price is drawn and one line says why the markers are missing. matplotlib is imported by
:mod:`trading.ops.charts` only when drawing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from trading.errors import ClientError, RPCError

from trading.market import periods

from . import common

# Shown period -> (fetched period, days shown), from the one table of periods: the
# indicators need SETTLE_SESSIONS bars before the first one drawn.
PERIODS = {shown: (periods.covering(days + periods.sessions_to_days(periods.SETTLE_SESSIONS)),
                   days)
           for shown, days in periods.PERIODS.items() if shown in ("1mo", "3mo", "6mo", "1y",
                                                                    "2y", "5y")}


def register(app: typer.Typer) -> None:
    app.command("chart")(chart)




def chart(
    symbol: str = typer.Argument(..., help="One symbol: CBA, CBA.AX, ^AXJO ..."),
    out: Optional[Path] = typer.Option(None, "--out", "-o",
                                       help="PNG file to write (default: SYMBOL.png here)."),
    source: Optional[str] = common.SourceOption(),
    period: str = typer.Option("6mo", "--period", "-p",
                               help=f"How much to show: {', '.join(PERIODS)}.",
                               autocompletion=lambda: list(PERIODS)),
    as_json: bool = common.json_option("the one-line summary"),
) -> None:
    """Chart a symbol: price with SMA20, RSI and MACD panes, stored predictions marked."""
    if period not in PERIODS:
        raise common.fail(f"--period {period!r} not supported; use {', '.join(PERIODS)}",
                          common.EXIT_USAGE)
    if out is not None and out.suffix.lower() != ".png":
        raise common.fail(f"--out needs a .png file name, got {out}", common.EXIT_USAGE)
    fetch, show_days = PERIODS[period]
    client = common.client()
    params = {"symbol": symbol, "interval": "1d", "period": fetch}
    if source is not None:
        params["source"] = source
    with common.working(f"fetching {symbol}"):
        bars = client.call("market-data", "get_bars", params)
    sym = bars["symbol"]
    path = out if out is not None else Path(f"{sym}.png")
    try:
        with common.working("reading stored predictions"):
            predictions = client.call("prediction", "history", {"symbol": sym, "limit": 1000})
    except (ClientError, RPCError) as exc:
        common.note(f"predictions not marked: {exc}")
        predictions = []

    from trading.ops import charts

    try:
        with common.interrupts_win(), common.working(f"drawing {path}"):
            drawn = charts.draw(path, sym, bars["bars"], predictions, show_days=show_days,
                                source=bars.get("source", "") + (" (stale)" if bars.get("stale")
                                                                  else ""))
    except OSError as exc:
        raise common.fail(f"cannot write {path}: {exc.strerror or exc}") from None
    drawn["path"] = str(path)
    drawn["source"] = bars.get("source")
    drawn["stale"] = bars.get("stale")
    if as_json:
        common.print_json(drawn)
        return
    c = drawn["counts"]
    print(f"{path}: {sym} {drawn['first']}..{drawn['last']}, {drawn['bars']} sessions; "
          f"predictions marked: {c['BUY']} BUY, {c['SELL']} SELL, {c['HOLD']} HOLD")
