"""``trading sentiment SYMBOL...``: news sentiment per symbol, as a table or JSON."""

from __future__ import annotations

from typing import Optional

import typer

from . import common


def register(app: typer.Typer) -> None:
    app.command("sentiment")(sentiment)




def sentiment(
    symbols: list[str] = typer.Argument(..., help="Symbols: CBA, CBA.AX, ^AXJO ..."),
    source: Optional[str] = common.SourceOption(
        "yahoo, sample or jsonl:DIR (default: the configured news source)."),
    headlines: int = typer.Option(0, "--headlines", "-n", min=0,
                                  help="Also list this many recent headlines per symbol "
                                       "(with --json: keep this many; default all)."),
    as_json: bool = common.JsonOption,
) -> None:
    """Recency-weighted news sentiment per symbol: score -1..1 and confidence 0..1."""
    params = {"symbols": symbols}
    if source is not None:
        params["source"] = source
    with common.working(f"fetching {len(symbols)} symbol(s)"):
        out = common.client().call("sentiment", "analyze_bulk", params)
    if as_json:
        if headlines:
            for r in out["results"].values():
                r["headlines"] = r["headlines"][:headlines]
        common.print_json(out)
    else:
        rows = []
        for sym, r in out["results"].items():
            rows.append([sym, f"{r['score']:+.3f}", f"{r['confidence']:.2f}", r["headline_count"],
                         r["positive"], r["negative"], r["neutral"], r["source"],
                         "stale" if r["stale"] else "fresh"])
        if rows:  # all symbols failed: the one-line errors below say it all
            common.table(None, ["symbol", "score", "confidence", "headlines", "+", "-", "0",
                                "source", "data"], rows)
        if headlines:
            for sym, r in out["results"].items():
                hl = r["headlines"][:headlines]
                if hl:
                    common.table(sym, ["published", "score", "publisher", "title"],
                                 [[h["published"], f"{h['score']:+.2f}", h["publisher"],
                                   h["title"]] for h in hl])
        for given, err in out["errors"].items():
            common.note(f"{given}: {err['message']}")
    if out["errors"]:
        worst = common.EXIT_USAGE if all(e["problem"].startswith("invalid")
                                         for e in out["errors"].values()) else common.EXIT_FAILURE
        raise typer.Exit(worst)
