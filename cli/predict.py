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
    app.command("explain")(explain)
    app.command("report")(report)
    app.command("events")(events)
    app.command("history")(history)
    app.command("replay")(replay)


_DEFAULT_PREDICTOR = "trading.signals.rules:predict"


def _by(p: dict) -> str:
    """Which predictor made a stored prediction, shortly (``rules``, ``momentum``)."""
    from trading.signals.predictors import label

    return label(p.get("predictor"))


def _pct(x) -> str:
    return "" if x is None else f"{x * 100:+.2f}%"


def _num(x, fmt: str) -> str:
    return "" if x is None else format(x, fmt)


def predict(
    symbols: list[str] = typer.Argument(None, help="Symbols (default: the configured seven)."),
    symbols_from: Optional[str] = common.SymbolsFromOption(),
    source: Optional[str] = common.SourceOption(),
    as_json: bool = common.JsonOption,
) -> None:
    """Predict BUY/SELL/HOLD for ASX symbols and store the predictions."""
    params: dict = {}
    symbols = common.universe(symbols, symbols_from)
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
        rows, why = [], []
        for sym, p in results.items():
            rows.append([sym, p["action"], _probability(p), p.get("as_of") or "?",
                         _age(p.get("as_of")), _num(p.get("price"), ".2f"),
                         p.get("market_context") + (" (stale)" if p.get("data_stale") else "")])
            why.append(f"{sym}: {_one_reason(p)}")
        if rows:
            ctx = result.get("market_context") or {}
            title = "Predictions"
            if ctx.get("context"):
                title += f" - market {ctx['context']}"
            made_by = (result.get("predictor") or {}).get("name")
            if made_by and made_by != _DEFAULT_PREDICTOR:
                title += f" - predictor {made_by}"
            common.table(title, ["symbol", "action", "P(right) 1d", "as of", "data age",
                                 "price", "context"], rows, compact=True)
            for line in why:
                print(line)
        for sym, err in errors.items():
            common.note(f"{sym}: {err.get('message', err)}")
    if not results and errors:
        # Every symbol failed: exit 2 when each was refused as input (a typo), else 1.
        refused = all(isinstance(e, dict) and e.get("problem") == "invalid-symbol"
                      for e in errors.values())
        raise typer.Exit(common.EXIT_USAGE if refused else common.EXIT_FAILURE)


def _probability(p: dict) -> str:
    """The calibrated probability of being right after one session, or why there is none."""
    if p.get("calibrated") is False:
        return "uncalibrated"
    return _num(p.get("confidence"), ".2f")


def _age(as_of: Optional[str]) -> str:
    """Days from the session of the last bar to today in Sydney (a CSV's bars may be old)."""
    import datetime as dt

    from trading import clock

    if not as_of:
        return "?"
    try:
        days = (clock.today() - dt.date.fromisoformat(as_of[:10])).days
    except ValueError:
        return "?"
    return "today" if days <= 0 else f"{days} d" + (" (old)" if days > 7 else "")


def _one_reason(p: dict) -> str:
    """The reason that decided the action, and whether the probability is calibrated."""
    reasons = p.get("reasons") or []
    decided = next((r for r in reversed(reasons)
                    if r.startswith(("BUY", "SELL", "HOLD"))), "")
    flags = [r.split(":")[0] for r in reasons if r.startswith(("no index data", "uncalibrated",
                                                                "sentiment unavailable"))]
    if p.get("data_source") == "sample":
        flags.append("synthetic sample data")
    return decided + (f" ({'; '.join(flags)})" if flags else "")


def explain(
    symbol: str = typer.Argument(..., help="The symbol whose latest prediction to explain."),
    as_json: bool = common.JsonOption,
) -> None:
    """The whole reasoning of a symbol's latest prediction: inputs, components, weights,
    thresholds, calibration, model and provenance."""
    p = common.client().call("prediction", "get_prediction", {"symbol": symbol,
                                                              "inputs": True})
    if as_json:
        common.print_json(p)
        return
    inputs = p.get("inputs") or {}
    market = inputs.get("market") or {}
    tech, vol = market.get("technical") or {}, market.get("volume") or {}
    ctx = market.get("market_context") or {}
    sent = inputs.get("sentiment") or {}
    print(f"{p['symbol']} {p['action']}, made {p['created_at'][:19].replace('T', ' ')} UTC "
          f"from {p.get('data_source') or market.get('source') or '?'} bars as of "
          f"{p.get('as_of') or market.get('as_of') or '?'} (data age {_age(p.get('as_of'))})")
    comp, weights = p.get("components") or {}, p.get("weights") or {}
    common.table("components (0..1, 0.5 neutral; a missing one counts 0.5 at its weight)",
                 ["component", "value", "weight"],
                 [[n, "missing" if v is None else f"{v:.3f}",
                   _num(weights.get(n), ".3f") or "-"] for n, v in comp.items()])
    strength = p.get("strength", p.get("confidence"))
    print(f"score {p.get('score')} (lean {p.get('lean')}); strength {strength} against BUY "
          f"threshold {p.get('buy_threshold')} (x{p.get('confidence_multiplier')}) and SELL "
          f"threshold {p.get('sell_threshold')}, market {p.get('market_context')}"
          + ("" if ctx.get("trend_pct") is None else f" (index {ctx['trend_pct']:+.2f}%)"))
    print(f"inputs: price {tech.get('current_price')}, RSI {tech.get('rsi')}, MACD histogram "
          f"{tech.get('macd_histogram')}, vs SMA20 {tech.get('price_vs_sma20')}%, volatility "
          f"{tech.get('volatility_pct')}%, volume score {vol.get('volume_quality_score')}, "
          f"sentiment {sent.get('score', 'none')}"
          + (f" ({sent.get('headline_count')} headlines)" if sent.get("headline_count") else ""))
    prob = p.get("probability") or {}
    cal = p.get("calibration") or {}
    if p.get("calibrated"):
        print(f"probability of being right: {prob.get('1')} after 1 session, {prob.get('5')} "
              f"after 5 ({cal.get('method')}, "
              + (f"record {cal['record']}" if cal.get("record") is not None
                 else "a replay's walk-forward fit")
              + ", fitted on "
              f"{'/'.join(str(n) for n in (cal.get('fitted_on') or {}).values())} scored "
              f"outcomes (1/5 sessions) through {cal.get('through')})")
    else:
        print("probability of being right: none, too little history to calibrate "
              f"(fitted on {cal.get('fitted_on') or 0}); the strength is not a probability")
    model = inputs.get("model") or {}
    print("model: " + (f"{model.get('version')} P(up) {model.get('probability')}"
                       if model.get("version") else "none active"))
    made_by = p.get("predictor")
    if isinstance(made_by, dict):
        details = [made_by.get("form"), made_by.get("sha256") and f"sha256 {made_by['sha256'][:12]}",
                   made_by.get("version") and f"version {made_by['version']}", made_by.get("file")]
        print(f"predictor: {made_by.get('name')} ({', '.join(d for d in details if d)})")
    elif made_by:
        print(f"predictor: {made_by}")
    print("reasons:")
    for r in p.get("reasons") or []:
        print(f"  - {r}")
    out = p.get("outcomes") or {}
    for h, o in sorted(out.items()):
        print(f"after {h} session(s): {_pct(o.get('forward_return'))} "
              f"({'right' if o.get('correct') else 'wrong'})")


def report(
    evaluate: bool = typer.Option(False, "--evaluate", help="Score pending outcomes first."),
    source: Optional[str] = common.SourceOption(
        "With --evaluate: score only predictions made from this source (each is scored on "
        "bars from its own source)."),
    origin: Optional[str] = typer.Option(None, "--origin", help="Only 'live' or 'replay'."),
    include_sample: bool = typer.Option(False, "--include-sample",
                                        help="Count predictions made from synthetic sample data."),
    chart: Optional[Path] = typer.Option(None, "--chart",
                                         help="Write the reliability diagram (PNG)."),
    by_symbol: bool = typer.Option(False, "--by-symbol", help="Also a table per symbol."),
    predictor: Optional[str] = typer.Option(None, "--predictor", help="Only this predictor's "
                                            "predictions (module:Name)."),
    as_json: bool = common.JsonOption,
) -> None:
    """The scorecard: BUY/SELL and HOLD hit rates with 95% intervals beside baselines over the
    same sessions, and how well the stated probability of being right is calibrated."""
    if chart is not None and chart.suffix.lower() != ".png":
        raise common.fail("--chart needs a .png file name", common.EXIT_USAGE)
    client = common.client()
    if evaluate:
        with common.working("scoring outcomes"):
            done = client.call("prediction", "evaluate_outcomes",
                               {"source": source} if source else None)
        common.note(f"scored {done['evaluated']} outcome(s); {done['pending']} prediction(s) "
                    "wait for more sessions")
        for sym, msg in (done.get("errors") or {}).items():
            common.note(f"{sym}: {msg}")
    params: dict = {**({"origin": origin} if origin else {}),
                    **({"include_sample": True} if include_sample else {}),
                    **({"predictor": predictor} if predictor else {})}
    rep = client.call("prediction", "accuracy_report", params or None)
    if chart is not None and rep["horizons"]:
        from trading.ops.charts import reliability_diagram

        try:
            reliability_diagram(chart, rep)
        except OSError as exc:
            raise common.fail(f"cannot write the chart {chart}: {exc}") from exc
    if as_json:
        common.print_json(rep)
        return
    print_scorecard(rep, by_symbol=by_symbol)
    if chart is not None:
        print(f"reliability diagram: {chart}" if rep["horizons"] else "no chart: no outcomes")


def _rate(s: dict) -> list[str]:
    """n, hit rate, 95% interval and the too-few flag of one scorecard rate."""
    ci = s.get("ci95")
    return [str(s["n"]), _num(s["hit_rate"], ".1%"),
            f"{ci[0]:.1%}-{ci[1]:.1%}" if ci else "",
            "too few" if s.get("too_few") else ""]


def print_scorecard(rep: dict, *, by_symbol: bool = False) -> None:
    from trading.signals.scorecard import headlines

    for line in headlines(rep):  # first: has acting on the calls shown an edge?
        print(line)
    counts = ", ".join(f"{n} {o}" for o, n in rep["predictions"].items()) or "none"
    folded = (rep.get("repeats_folded") or {}).get("1", 0)
    print(f"predictions stored: {counts}; outcomes scored: {rep['outcomes']}"
          + (f"; {rep['sample_left_out']} from synthetic sample data left out "
             "(--include-sample counts them)" if rep.get("sample_left_out") else "")
          + (f"; {folded} earlier run(s) of a symbol's session folded into that session's "
             "latest" if folded else ""))
    if not rep["horizons"]:
        print("no outcomes yet: predictions are scored once 1 and 5 sessions have passed "
              "(`trading report --evaluate`, or `trading replay DIR` for history)")
        return
    for h, card in rep["horizons"].items():
        a, b = card["by_action"], card["baselines"]
        band = card["hold_band"]
        rows = []
        for key, label in (("BUY/SELL", "BUY/SELL calls"), ("BUY", "  BUY"),
                           ("SELL", "  SELL"), ("HOLD", "HOLD")):
            rows.append([label, *_rate(a[key]), _pct(a[key]["mean_return"])])
        rows.append(["baselines, same sessions:", "", "", "", "", ""])
        rows.append(["  always HOLD", *_rate(b["always_hold"]), ""])
        rows.append(["  always BUY (buy&hold)", *_rate(b["always_buy"]),
                     _pct(b["buy_and_hold_mean_return"])])
        rows.append(["  always SELL", *_rate(b["always_sell"]), ""])
        rows.append([f"  majority ({b['majority']['action']})", *_rate(b["majority"]), ""])
        common.table(f"After {h} session(s): {card['n']} scored predictions "
                     f"(HOLD right when |return| < {band:.1%})",
                     ["", "n", "hit rate", "95% interval", "note", "mean ret"], rows)
        acting = a["BUY/SELL"].get("mean_return_acting")
        if acting is not None:
            print(f"acting on the BUY/SELL calls (long BUY, short SELL) returned "
                  f"{_pct(acting)} per call; buy-and-hold {_pct(b['buy_and_hold_mean_return'])}"
                  " per symbol-session, before costs")
        pr = card["probability"]
        cal, raw = pr["calibrated"], pr["raw_strength"]
        if cal["n"]:
            table = [[r["bin"], r["n"], _num(r["mean_stated"], ".3f"),
                      _num(r["hit_rate"], ".3f"),
                      f"{r['ci95'][0]:.3f}-{r['ci95'][1]:.3f}",
                      "too few" if r["too_few"] else ""] for r in cal["reliability"]]
            common.table(f"After {h} session(s): stated probability of being right vs what "
                         "happened (reliability)",
                         ["stated", "n", "mean stated", "observed", "95% interval", "note"],
                         table)
            wf = pr["walk_forward_climatology"]
            print(f"calibrated: ECE {cal['ece']:.3f}; Brier {cal['brier']:.4f} vs "
                  f"{cal['brier_climatology']:.4f} for climatology (base rate "
                  f"{cal['base_rate']:.3f}, known only in hindsight): skill "
                  f"{cal['brier_skill']:+.3f}; on n = {cal['n']}")
            if wf["n"]:
                print(f"  vs walk-forward climatology (the base rate settled before each "
                      f"prediction): Brier {wf['brier']:.4f} vs {wf['brier_climatology']:.4f},"
                      f" skill {wf['brier_skill']:+.3f} on n = {wf['n']}")
            print(f"raw strength on the same rows: ECE {raw['ece']:.3f}; Brier "
                  f"{raw['brier']:.4f}, skill {raw['brier_skill']:+.3f}")
        if pr["uncalibrated"]:
            all_raw = pr.get("raw_strength_all") or {}
            print(f"{pr['uncalibrated']} prediction(s) made without a calibration (too little "
                  "history) are left out of the calibrated figures"
                  + (f"; raw strength over all {card['n']}: ECE {all_raw['ece']:.3f}, Brier "
                     f"skill {all_raw['brier_skill']:+.3f}" if all_raw.get("n") else ""))
        if by_symbol:
            rows = [[sym, *_rate(v["BUY/SELL"])[:3], *_rate(v["HOLD"])[:3],
                     _num(v["always_hold"]["hit_rate"], ".1%")]
                    for sym, v in card["by_symbol"].items()]
            common.table(f"After {h} session(s), by symbol",
                         ["symbol", "calls n", "hit", "95%", "HOLD n", "hit", "95%",
                          "always HOLD"], rows)
        by_predictor = rep.get("by_predictor") or {}
        if len(by_predictor) > 1:  # side by side (replay --compare): each one's apart
            from trading.signals.predictors import label

            rows = []
            for name, cards in by_predictor.items():
                c = cards.get(h)
                if c is None:
                    continue
                for key in ("BUY/SELL", "HOLD"):
                    rows.append([f"{label({'name': name})} {key}", *_rate(c["by_action"][key]),
                                 _pct(c["by_action"][key]["mean_return"])])
            common.table(f"After {h} session(s), by predictor",
                         ["", "n", "hit rate", "95% interval", "note", "mean ret"], rows)


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
                f"price {p.get('price')} ({p.get('market_context')}) by {_by(p)}")
    elif e["type"] == "outcome":
        text = (f"{p.get('symbol')} {p.get('action')} after {p.get('horizon')} session(s): "
                f"{_pct(p.get('forward_return'))} "
                f"({'right' if p.get('correct') else 'wrong'})")
    else:
        text = str(p)
    print(f"{e['id']:>6} {e['created_at'][:19]} {e['type']:<10} {text}", flush=True)


def history(
    symbol: Optional[str] = typer.Argument(None, help="One symbol (default: all)."),
    since: Optional[str] = typer.Option(
        None, "--since", help="ISO date or date-time; Sydney time unless it has an offset."),
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
    import datetime as dt
    from zoneinfo import ZoneInfo

    sydney = ZoneInfo("Australia/Sydney")  # the zone --since reads, so a time copies across
    table = []
    for p in rows:
        out = p.get("outcomes") or {}
        made = dt.datetime.fromisoformat(p["created_at"]).astimezone(sydney)
        table.append([made.strftime("%Y-%m-%d %H:%M"), p["symbol"], p["action"],
                      f"{p['confidence']:.2f}", _num(p.get("price"), ".2f"),
                      p.get("market_context"),
                      _pct((out.get("1") or {}).get("forward_return")),
                      _pct((out.get("5") or {}).get("forward_return")), _by(p)])
    if not table:
        if symbol or since:  # the store may hold others: say what was asked for
            asked = " ".join(filter(None, [symbol and f"for {symbol}",
                                           since and f"since {since}"]))
            print(f"no predictions stored {asked} (`trading history` lists them all)")
        else:
            print("no predictions stored yet (run `trading predict`)")
        return
    # Fits 80 columns: the return after 1 and 5 sessions as "+1", "+5"; "by": the predictor.
    common.table("Prediction history (returns after 1 and 5 sessions)",
                 ["made (Sydney)", "symbol", "action", "conf", "price", "context", "+1", "+5",
                  "by"], table, compact=True)


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
                                     help="A folder of SYMBOL.csv daily bars, e.g. tests/data/asx-daily."),
    symbols: list[str] = typer.Option(None, "--symbol", "-s", help="Symbols (default: configured)."),
    symbols_from: Optional[str] = common.SymbolsFromOption(),
    start: Optional[str] = typer.Option(None, "--start", help="First session (YYYY-MM-DD).",
                                        callback=_iso_date),
    end: Optional[str] = typer.Option(None, "--end", help="Last session (YYYY-MM-DD).",
                                      callback=_iso_date),
    every: int = typer.Option(1, "--every", min=1, help="Predict every N-th session."),
    predictor: Optional[str] = typer.Option(None, "--predictor", help="module:Name (default: "
                                            "the configured predictor)."),
    compare: bool = typer.Option(False, "--compare", help="Also replay the built-in rules, "
                                 "side by side (see `trading report --origin replay`)."),
    as_json: bool = common.JsonOption,
) -> None:
    """Replay history: predict each session from the bars up to it, then score the outcomes."""
    import datetime as dt

    from trading import config
    from trading.errors import InvalidParams
    from trading.handlers import params
    from trading.signals import predictors
    from trading.signals import replay as history_replay
    from trading.runtime.store import Store
    from trading.market.sources import CsvSource
    from trading.market.symbols import normalize_all

    if start and end and start > end:
        raise common.fail(f"--start {start} is after --end {end}", common.EXIT_USAGE)
    cfg = config.get()
    try:
        chosen = predictors.from_config(cfg, params.predictor(predictor))
    except InvalidParams as exc:
        raise common.fail(exc.message, common.EXIT_USAGE) from None
    runs = [chosen]
    if compare and chosen.name != predictors.DEFAULT:
        runs.append(predictors.from_config(cfg, predictors.DEFAULT))
    source = f"csv:{directory.resolve()}"
    # The files are read here, each once, by market-data's own reader: a replay reads a
    # folder's whole record, and copying decades of bars into the bar cache (whose budget is
    # for the series live predictions use) would only push those out.
    local = CsvSource(directory.resolve())

    symbols = common.universe(symbols, symbols_from)
    wanted = normalize_all(list(symbols) if symbols else cfg["symbols"])
    # interrupts_win: Ctrl-C during scikit-learn's first import (the calibration's) comes out
    # of scipy's compiled modules as "ImportError: initialization failed".
    with common.interrupts_win(), \
            _replay_progress(len(wanted) + 1) as step:  # + 1: the index's bars come first

        def get_bars(symbol: str, period: str, _source: str | None = None):  # always `source`
            step(symbol)
            fetched = local.fetch([symbol], dt.date.min, dt.date.max)
            if symbol in fetched.errors:
                raise fetched.errors[symbol]
            # As market-data's get_bars answers (prices to six decimals), so a replayed call
            # sees the numbers a live one would.
            return {"symbol": symbol, "source": source, "bars": fetched.bars[symbol].to_rows(),
                    "reading": fetched.readings.get(symbol)}

        result = history_replay.replay(Store(cfg.db_path), cfg, get_bars, wanted,
                                       source=source, start=start, end=end, every=every,
                                       predictors=runs)
    if as_json:
        common.print_json(result)
        return
    for run in result.get("runs") or [result]:
        acts = ", ".join(f"{n} {a}" for a, n in sorted(run["by_action"].items()))
        print(f"{predictors.label(run['predictor'])}: replayed {run['predictions']} "
              f"predictions ({acts or 'none'})")
        for problem, e in (run.get("errors") or {}).items():
            common.note(f"{e['count']} not predicted ({problem}); first: {e['first']}")
    for line in replay_summary(result):
        print(line)
    print(f"scored {result['outcomes']['evaluated']} outcomes. "
          "See `trading report --origin replay`.")


def replay_summary(result: dict) -> list[str]:
    """What the replay used and what it left out, and what the reader did to the files: a
    trader should never have to guess why a history gave fewer calls than it has days."""
    cov = result.get("coverage") or {}
    lines = []
    if cov.get("symbols"):
        left = ", ".join(f"{n:,} {why}" for why, n in cov.get("left_out", {}).items())
        lines.append(f"sessions: {cov['sessions']:,} in {cov['symbols']} series, "
                     f"{cov['first']} to {cov['last']}; predicted {cov['predicted']:,}"
                     + (f"; not predicted: {left}" if left else ""))
    for symbol, why in (cov.get("no_data") or {}).items():
        lines.append(f"{symbol}: not replayed: {why}")
    readings = list((result.get("reading") or {}).values())
    if readings:
        dropped: dict[str, int] = {}
        for r in readings:
            for why, n in (r.get("dropped") or {}).items():
                dropped[why] = dropped.get(why, 0) + n
        parts = [f"{n:,} {why}" for why, n in dropped.items() if n]
        adjusted = sum(1 for r in readings if r.get("adjusted"))
        lines.append(
            f"files: {adjusted} of {len(readings)} adjusted by their Adj Close; rows dropped: "
            + (", ".join(parts) if parts else "none")
            + f"; {sum(r.get('zero_volume') or 0 for r in readings):,} zero-volume sessions "
            f"kept; {sum(r.get('gaps') or 0 for r in readings):,} gaps (indicators restart "
            "after each). Each file's report: --json")
    return lines


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
