"""``trading market SYMBOL...``: indicators and market context for symbols, as a table or JSON."""

from __future__ import annotations

from typing import Optional

import typer

from . import common


def register(app: typer.Typer) -> None:
    app.command("market")(market)




def _fmt(value, digits: int = 2) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _reading(report: dict) -> str:
    """What the reader of a csv file decided, in one line; empty when it took every row
    as it was (``--json`` has the whole report)."""
    told = [f"{why} {n}" for why, n in report.get("dropped", {}).items() if n]
    if report.get("merged"):
        told.append(f"intraday rows merged {report['merged']}")
    if report.get("gaps"):
        g = report["longest_gap"]
        told.append(f"gaps {report['gaps']} (longest {g['sessions']} sessions, {g['after']} to "
                    f"{g['before']})")
    if not told:
        return ""
    return (f"{report['file']}: {report['rows']} rows, {report['sessions']} sessions kept; "
            + ", ".join(told))


def market(
    symbols: list[str] = typer.Argument(..., help="Symbols: CBA, CBA.AX, ^AXJO ..."),
    source: Optional[str] = common.SourceOption(),
    as_json: bool = common.JsonOption,
) -> None:
    """Price, RSI, MACD, volume and the market context for each symbol (one fetch for all)."""
    params = {"symbols": symbols}
    if source is not None:
        params["source"] = source
    with common.working(f"fetching {len(symbols)} symbol(s)"):
        out = common.client().call("market-data", "bulk_fetch", params)
    if as_json:
        common.print_json(out)
    else:
        rows = []
        for sym, r in out["results"].items():
            t, v = r["technical"], r["volume"]
            rows.append([sym, r["as_of"] + (" stale" if r["stale"] else ""),
                         _fmt(t["current_price"]), _fmt(t["rsi"]), _fmt(t["macd_histogram"], 4),
                         _fmt(t["price_vs_sma20"]), _fmt(t["tech_score"]),
                         _fmt(v["volume_quality_score"])])
        ctx = out["market_context"]
        title = (f"market {ctx['context']}"
                 + (" (fallback: index unavailable)" if ctx.get("fallback")
                    else f", index {_fmt(ctx['trend_pct'])}%")
                 + f"; BUY threshold {ctx['buy_threshold']}, multiplier "
                   f"{ctx['confidence_multiplier']}")
        # Scores are 0..1 with 0.5 neutral; "vs SMA20" is percent.
        if rows:  # all symbols failed: the one-line errors below say it all
            common.table(title, ["symbol", "as of", "price", "RSI", "MACD hist", "vs SMA20",
                                 "tech", "volume"], rows)
        for sym, r in out["results"].items():
            if r.get("reading") and (told := _reading(r["reading"])):
                common.note(f"{sym}: {told}")
        for given, err in out["errors"].items():
            common.note(f"{given}: {err['message']}")
    if out["errors"]:
        worst = common.EXIT_USAGE if all(e["problem"].startswith("invalid")
                                         for e in out["errors"].values()) else common.EXIT_FAILURE
        raise typer.Exit(worst)
