"""``trading predict``, ``report``, ``events``, ``history`` and ``replay``: the main job.

``predict`` goes through the prediction socket when the services are installed; otherwise the
client runs the same handlers in-process and says so in one line (so a plain cron line keeps
working). Its exit code is non-zero only when every symbol failed.

``replay DIR`` always runs in-process: it reads a ``csv:DIR`` history the installed (sandboxed)
services may not be allowed to see, and it is a batch job, not a request.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Optional

import typer

from . import common


def register(app: typer.Typer) -> None:
    app.command("predict")(predict)
    app.command("report")(report)
    app.command("events")(events)
    app.command("history")(history)
    app.command("replay")(replay)


def _pct(x) -> str:
    return "" if x is None else f"{x * 100:+.2f}%"


def _num(x, fmt: str) -> str:
    return "" if x is None else format(x, fmt)


def predict(
    symbols: list[str] = typer.Argument(None, help="Symbols (default: the configured seven)."),
    source: Optional[str] = common.SourceOption(),
    as_json: bool = common.JsonOption,
) -> None:
    """Predict BUY/SELL/HOLD for ASX symbols and store the predictions."""
    params: dict = {}
    if symbols:
        params["symbols"] = list(symbols)
    if source:
        params["source"] = source
    client = common.client()  # in-process, it says so once for all three services
    with common.working(f"predicting {len(symbols) if symbols else 'the configured'} symbol(s)"):
        result = client.call("prediction", "generate_predictions", params or None)
    results, errors = result.get("results") or {}, result.get("errors") or {}
    if as_json:
        common.print_json(result)
    else:
        rows = []
        for sym, p in results.items():
            rows.append([sym, p["action"], f"{p['confidence']:.2f}", _num(p.get("price"), ".2f"),
                         _num(p.get("rsi"), ".1f"), _num(p.get("sentiment_score"), "+.2f"),
                         p.get("market_context") + (" (stale)" if p.get("data_stale") else "")])
        if rows:
            ctx = result.get("market_context") or {}
            title = "Predictions"
            if ctx.get("context"):
                title += f" - market {ctx['context']}"
            common.table(title, ["symbol", "action", "confidence", "price", "RSI", "sentiment",
                                 "context"], rows)
        for sym, err in errors.items():
            common.note(f"{sym}: {err.get('message', err)}")
    if not results and errors:
        # Every symbol failed: exit 2 when each was refused as input (a typo), else 1.
        refused = all(isinstance(e, dict) and e.get("problem") == "invalid-symbol"
                      for e in errors.values())
        raise typer.Exit(common.EXIT_USAGE if refused else common.EXIT_FAILURE)


def report(
    evaluate: bool = typer.Option(False, "--evaluate", help="Score pending outcomes first."),
    source: Optional[str] = common.SourceOption(
        "With --evaluate: score only predictions made from this source (each is scored on "
        "bars from its own source)."),
    origin: Optional[str] = typer.Option(None, "--origin", help="Only 'live' or 'replay'."),
    as_json: bool = common.JsonOption,
) -> None:
    """Outcome statistics: hit rate by action, confidence band and symbol."""
    client = common.client()
    if evaluate:
        with common.working("scoring outcomes"):
            done = client.call("prediction", "evaluate_outcomes",
                               {"source": source} if source else None)
        common.note(f"scored {done['evaluated']} outcome(s); {done['pending']} prediction(s) "
                    "wait for more sessions")
        for sym, msg in (done.get("errors") or {}).items():
            common.note(f"{sym}: {msg}")
    rep = client.call("prediction", "accuracy_report", {"origin": origin} if origin else None)
    if as_json:
        common.print_json(rep)
        return
    counts = ", ".join(f"{n} {o}" for o, n in rep["predictions"].items()) or "none"
    print(f"predictions stored: {counts}; outcomes scored: {rep['outcomes']}")
    if not rep["horizons"]:
        print("no outcomes yet: predictions are scored once 1 and 5 sessions have passed "
              "(`trading report --evaluate`, or `trading replay DIR` for history)")
        return
    band = rep["hold_band"]
    for h, stats in rep["horizons"].items():
        rows = []
        for kind, label in (("by_action", "action"), ("by_confidence", "confidence"),
                            ("by_symbol", "symbol")):
            for key, s in stats[kind].items():
                rows.append([label, key, s["n"], _num(s["hit_rate"], ".1%"),
                             _pct(s["mean_return"]), _pct(s["mean_excess_return"])])
        o = stats["overall"]
        rows.append(["all", "", o["n"], _num(o["hit_rate"], ".1%"), _pct(o["mean_return"]),
                     _pct(o["mean_excess_return"])])
        common.table(f"After {h} session(s) (HOLD right when |return| < {band[h]:.1%})",
                     ["by", "group", "n", "hit rate", "mean return", "vs index"], rows)


def events(
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new events."),
    type: Optional[str] = typer.Option(None, "--type", "-t", help="Only events of this type: prediction or outcome."),
    limit: int = typer.Option(20, "--limit", "-n", min=1, max=1000, help="How many to show."),
    interval: float = typer.Option(1.0, "--interval", min=0.1, help="Seconds between polls."),
    as_json: bool = common.JsonOption,
) -> None:
    """Print the latest events (predictions, outcomes); --follow keeps printing new ones."""
    client = common.client()
    params = {"limit": limit, "latest": True, **({"type": type} if type else {})}
    last = 0
    # Ctrl-C ends --follow as it ends any command: exit 130 (the app's group says so).
    while True:
        batch = client.call("prediction", "events", params)
        for e in batch:
            _print_event(e, as_json)
            last = max(last, e["id"])
        if not follow:
            return
        if len(batch) < params["limit"] or params.get("latest"):
            time.sleep(interval)
        params = {"after_id": last, "limit": 1000, **({"type": type} if type else {})}


def _print_event(e: dict, as_json: bool) -> None:
    if as_json:
        common.print_json(e)
        return
    p = e.get("payload") or {}
    if e["type"] == "prediction":
        text = (f"{p.get('symbol')} {p.get('action')} confidence {p.get('confidence')} "
                f"price {p.get('price')} ({p.get('market_context')})")
    elif e["type"] == "outcome":
        text = (f"{p.get('symbol')} {p.get('action')} after {p.get('horizon')} session(s): "
                f"{_pct(p.get('forward_return'))} "
                f"({'right' if p.get('correct') else 'wrong'})")
    else:
        text = str(p)
    print(f"{e['id']:>6} {e['created_at'][:19]} {e['type']:<10} {text}", flush=True)


def history(
    symbol: Optional[str] = typer.Argument(None, help="One symbol (default: all)."),
    since: Optional[str] = typer.Option(None, "--since", help="ISO date or date-time."),
    limit: int = typer.Option(50, "--limit", "-n", min=1, max=1000),
    as_json: bool = common.JsonOption,
) -> None:
    """Stored predictions, newest first, with their outcomes so far."""
    params = {"limit": limit, **({"symbol": symbol} if symbol else {}),
              **({"since": since} if since else {})}
    rows = common.client().call("prediction", "history", params)
    if as_json:
        common.print_json(rows)
        return
    table = []
    for p in rows:
        out = p.get("outcomes") or {}
        table.append([p["created_at"][:16].replace("T", " "), p["symbol"], p["action"],
                      f"{p['confidence']:.2f}", _num(p.get("price"), ".2f"),
                      p.get("market_context"),
                      _pct((out.get("1") or {}).get("forward_return")),
                      _pct((out.get("5") or {}).get("forward_return"))])
    if not table:
        if symbol or since:  # the store may hold others: say what was asked for
            asked = " ".join(filter(None, [symbol and f"for {symbol}",
                                           since and f"since {since}"]))
            print(f"no predictions stored {asked} (`trading history` lists them all)")
        else:
            print("no predictions stored yet (run `trading predict`)")
        return
    # Fits 80 columns: the return after 1 and 5 sessions as "+1", "+5".
    common.table("Prediction history (returns after 1 and 5 sessions)",
                 ["created (UTC)", "symbol", "action", "conf", "price", "context", "+1", "+5"],
                 table, compact=True)


def _iso_date(value: Optional[str]) -> Optional[str]:
    """A session date as YYYY-MM-DD (compared as text with the bars' dates, so it must be
    exactly that form: a typo would otherwise select nothing, silently)."""
    import datetime as dt

    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date like 2025-06-30") from None


def replay(
    directory: Path = typer.Argument(..., exists=True, file_okay=False,
                                     help="A csv:DIR history, e.g. ../shared/data/asx-daily."),
    symbols: list[str] = typer.Option(None, "--symbol", "-s", help="Symbols (default: configured)."),
    start: Optional[str] = typer.Option(None, "--start", help="First session (YYYY-MM-DD).",
                                        callback=_iso_date),
    end: Optional[str] = typer.Option(None, "--end", help="Last session (YYYY-MM-DD).",
                                      callback=_iso_date),
    every: int = typer.Option(1, "--every", min=1, help="Predict every N-th session."),
    as_json: bool = common.JsonOption,
) -> None:
    """Replay history: predict each session from the bars up to it, then score the outcomes."""
    from trading import config, handlers
    from trading.signals import replay as history_replay
    from trading.runtime.store import Store
    from trading.market.symbols import normalize_all

    if start and end and start > end:
        raise common.fail(f"--start {start} is after --end {end}", common.EXIT_USAGE)
    cfg = config.get()
    client = handlers.client(cfg, in_process="always")
    source = f"csv:{directory.resolve()}"

    wanted = normalize_all(list(symbols) if symbols else cfg["symbols"])
    with _replay_progress(len(wanted) + 1) as step:  # + 1: the index's bars come first

        def get_bars(symbol: str, period: str, _source: str | None = None):  # always `source`
            step(symbol)
            return client.call("market-data", "get_bars", {"symbol": symbol, "interval": "1d",
                                                           "period": period, "source": source})

        result = history_replay.replay(Store(cfg.db_path), cfg, get_bars, wanted,
                                       source=source, start=start, end=end, every=every)
    if as_json:
        common.print_json(result)
        return
    acts = ", ".join(f"{n} {a}" for a, n in sorted(result["by_action"].items()))
    print(f"replayed {result['predictions']} predictions ({acts}); scored "
          f"{result['outcomes']['evaluated']} outcomes. See `trading report --origin replay`.")


@contextlib.contextmanager
def _replay_progress(fetches: int) -> Iterator[Callable[[str], None]]:
    """A bar on stderr (a terminal only) over the replay's bar fetches, one per symbol; the
    fetches after those are the outcome scoring, shown as such."""
    if not sys.stderr.isatty():
        yield lambda symbol: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("replaying", total=fetches)
        seen = [0]

        def step(symbol: str) -> None:
            seen[0] += 1
            if seen[0] <= fetches:
                bar.update(task, completed=seen[0] - 1, description=f"replaying {symbol}")
            else:
                bar.update(task, completed=fetches, description=f"scoring outcomes {symbol}")

        yield step
