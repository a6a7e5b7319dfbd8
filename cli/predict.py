"""``trading predict``, ``report``, ``events``, ``history`` and ``replay``: the main job.

``predict`` goes through the prediction socket when the services are installed; otherwise the
client runs the same handlers in-process and says so in one line (so a plain cron line keeps
working). Its exit code is non-zero only when every symbol failed.

``history`` shows one stream at a time (origin, data source, predictor, interval: by default
the live stream of the configured predictor) and names the others. ``history``, ``report``
and ``explain`` only read: with the services stopped they read the store directly, read-only
(:class:`trading.cli.common.Reading`). ``predict --predictor`` (or ``TRADING_PREDICTOR``) is
passed on the call, so it reaches a systemd-run service too.

``replay DIR`` reads the folder in this process: it reads a ``csv:DIR`` history the installed
(sandboxed) services may not be allowed to see, and it is a batch job, not a request. A plugged
predictor still runs only in the prediction service, in its sandbox (``run_predictor``).
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
    predictor: Optional[str] = typer.Option(
        None, "--predictor", help="This run's predictor, module:Name: the built-in rules or "
        "one in the predictors folder (default: the configured one; TRADING_PREDICTOR for "
        "one command works too)."),
    notify: bool = typer.Option(False, "--notify", help="Also send this run's alerts now, as "
                                "a job run would (default: shown here only, never queued for "
                                "a later job)."),
    interval: Optional[str] = typer.Option(
        None, "--interval", help="The bars the predictor's inputs are computed over: 1d, or "
        "the completed bars of 1h, 30m or 15m (default: the configured predictor_interval; "
        "TRADING_PREDICTOR_INTERVAL for one command works too)."),
    as_json: bool = common.JsonOption,
) -> None:
    """Predict BUY/SELL/HOLD for ASX symbols and store the predictions."""
    params: dict = {}
    interval = _interval_override(interval)
    if notify:
        _notify_check(source, predictor)
    symbols = common.universe(symbols, symbols_from)
    if symbols:
        params["symbols"] = list(symbols)
    if source:
        params["source"] = source
    from trading import config

    # Passed on the call: the services run with their own environment and configuration.
    chosen = common.predictor_override(config.get(), predictor)
    if chosen:
        params["predictor"] = chosen
    if interval:
        params["interval"] = interval
    client = common.client()  # in-process, it says so once for all three services
    with common.working(f"predicting {len(symbols) if symbols else 'the configured'} symbol(s)"):
        result = client.call("prediction", "generate_predictions", params or None)
    results, errors = result.get("results") or {}, result.get("errors") or {}
    sent = _notify_now(result) if notify else None
    if as_json:
        common.print_json({**result, **({"notify": sent} if notify else {})})
    else:
        rows, why = [], []
        for sym, p in results.items():
            rows.append([sym, p["action"], _probability(p), p.get("bar") or p.get("as_of") or "?",
                         _age(p.get("as_of")), _num(p.get("price"), ".2f"),
                         p.get("market_context") + (" (stale)" if p.get("data_stale") else "")])
            why.append(f"{sym}: {_one_reason(p)}")
        if rows:
            ctx = result.get("market_context") or {}
            title = "Predictions"
            if ctx.get("context"):
                title += f" - market {ctx['context']}"
            made_by = (result.get("predictor") or {}).get("name")
            plugged = bool(made_by) and made_by != _DEFAULT_PREDICTOR
            if plugged:
                title += f" - predictor {made_by}"
            if result.get("interval", "1d") != "1d":
                title += f" - {result['interval']} bars"
            common.table(title, ["symbol", "action",
                                 "its conf." if plugged else "P(right) 1d", "as of",
                                 "data age", "price", "context"], rows, compact=True)
            for line in why:
                print(line)
            if plugged:  # once: its figure is not the rules' calibrated probability
                from trading.signals.predictors import label

                print(f"its conf.: {label({'name': made_by})}'s own confidence, not a "
                      "calibrated probability of being right (only the built-in rules' is)")
        for line in unchanged_lines(result):
            print(line)
        for sym, err in errors.items():
            common.note(f"{sym}: {err.get('message', err)}")
        if notify:
            from trading.ops.notify import summary as notify_summary

            for line in ([f"notify: {sent['error']}"] if "error" in sent
                         else notify_summary(sent)):
                print(line)
    if not results and errors:
        # Every symbol failed: exit 2 when each was refused as input (a typo), else 1.
        refused = all(isinstance(e, dict) and e.get("problem") == "invalid-symbol"
                      for e in errors.values())
        raise typer.Exit(common.EXIT_USAGE if refused else common.EXIT_FAILURE)


def _notify_check(source: Optional[str], predictor: Optional[str]) -> None:
    """``--notify`` needs alert URLs, the configured source and the configured predictor:
    alerts are one stream (the job's)."""
    from trading import config

    cfg = config.get()
    if not cfg["notify.urls"]:
        raise common.fail("--notify: no notify.urls configured (see `trading config show`)",
                          common.EXIT_USAGE)
    if source and source != cfg["source"]:
        raise common.fail(f"--notify: alerts come from the configured source "
                          f"({cfg['source']}), not {source}", common.EXIT_USAGE)
    if predictor and predictor != cfg["predictor"]:
        raise common.fail(f"--notify: alerts come from the configured predictor "
                          f"({cfg['predictor']}), not {predictor}", common.EXIT_USAGE)


def _notify_now(result: dict) -> dict:
    """Put this run in the alert stream and send its alerts now (docs/operations.md)."""
    from trading import config
    from trading.ops import notify
    from trading.runtime.store import Store

    cfg = config.get()
    try:
        store = Store(cfg.db_path)
        notify.queue_run(store, cfg, result, "notify")
        return notify.deliver(store, cfg) or {}
    except Exception as exc:  # noqa: BLE001 - the predictions are stored; say why none went
        return {"error": notify.scrub(f"not sent ({type(exc).__name__}: {exc})",
                                      " ".join(cfg["notify.urls"]))}


def _probability(p: dict) -> str:
    """The calibrated probability of being right after one session, or why there is none;
    for a plugged predictor, its own confidence (the column says so)."""
    probability = p.get("probability") if isinstance(p.get("probability"), dict) else {}
    if p.get("calibrated") and probability.get("1") is not None:
        return _num(probability["1"], ".2f")
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
                    if r.startswith(("BUY", "SELL", "HOLD"))), reasons[0] if reasons else "")
    decided = decided.removeprefix(f"{p.get('symbol')}: ")  # the line starts with the symbol
    flags = [r.split(":")[0] for r in reasons if r.startswith(("no index data", "uncalibrated",
                                                                "sentiment unavailable"))]
    if p.get("data_source") == "sample":
        flags.append("synthetic sample data")
    return decided + (f" ({'; '.join(flags)})" if flags else "")


def explain(
    symbol: str = typer.Argument(..., help="The symbol whose latest prediction to explain."),
    predictor: Optional[str] = typer.Option(
        None, "--predictor", help="That predictor's latest (module:Name or its short name, "
        "e.g. rules; default: the configured predictor's, else the latest of any)."),
    origin: Optional[str] = typer.Option(None, "--origin", help="live or replay (default: "
                                         "live, else any)."),
    as_json: bool = common.JsonOption,
) -> None:
    """The whole reasoning of a symbol's latest prediction: inputs, components, weights,
    thresholds, calibration, model and provenance."""
    from trading import config
    from trading.errors import NotFound

    cfg = config.get()
    client = common.Reading()
    asked = {"symbol": symbol, "inputs": True}
    if origin or predictor:
        p = client.call("prediction", "get_prediction", {
            **asked, **({"origin": origin} if origin else {}),
            **({"predictor": predictor} if predictor else {})})
    else:  # the live stream of the configured predictor, else whatever there is (said so)
        try:
            p = client.call("prediction", "get_prediction", {
                **asked, "origin": "live", "predictor": cfg["predictor"]})
        except NotFound:
            p = client.call("prediction", "get_prediction", asked)
    if as_json:
        common.print_json(p)
        return
    for line in explanation(p, cfg["predictor"]):
        print(line)


def explanation(p: dict, configured: str) -> list[str]:
    """``trading explain`` in lines: what the prediction's own predictor reported, in its own
    terms; nothing it did not report is printed (no ``None``s, no empty tables)."""
    from trading.signals.predictors import DEFAULT, label

    inputs = p.get("inputs") or {}
    market = inputs.get("market") or {}
    tech, vol = market.get("technical") or {}, market.get("volume") or {}
    ctx = market.get("market_context") or {}
    sent = inputs.get("sentiment") or {}
    made_by = p.get("predictor")
    name = made_by.get("name") if isinstance(made_by, dict) else (made_by or DEFAULT)
    own = label({"name": name})
    rules = name == DEFAULT
    stream = p.get("stream") or {}
    out = [f"{p['symbol']} {p['action']}, made {p['created_at'][:19].replace('T', ' ')} UTC "
           f"from {p.get('data_source') or market.get('source') or 'unknown'} bars"
           + (f" as of {p.get('as_of') or market.get('as_of')}"
              if p.get("as_of") or market.get("as_of") else "")
           + f" (data age {_age(p.get('as_of'))})"]
    if stream:
        out.append(f"stream: {_stream(stream)}"
                   + ("" if stream.get("origin") == "live" and name == configured else
                      " (not the live stream of the configured predictor, "
                      f"{label({'name': configured})})"))
    comp, weights = p.get("components") or {}, p.get("weights") or {}
    if comp:
        rows = [[n, "missing" if v is None else f"{v:.3f}", _num(weights.get(n), ".3f") or "-"]
                for n, v in comp.items()]
        out += _table("components (0..1, 0.5 neutral; a missing one counts 0.5 at its weight)",
                      ["component", "value", "weight"], rows)
    if rules:
        strength = p.get("strength", p.get("confidence"))
        parts = _present([("score", p.get("score"), ""), ("lean", p.get("lean"), "")])
        line = ", ".join(parts)
        mult = p.get("confidence_multiplier")
        thresholds = _present([("BUY threshold", p.get("buy_threshold"),
                                "" if mult is None else f" (x{mult})"),
                               ("SELL threshold", p.get("sell_threshold"), "")])
        out.append((line + "; " if line else "") + f"strength {_num(strength, '.4f')}"
                   + (f" against {', '.join(thresholds)}" if thresholds else "")
                   + _market(p, ctx))
    else:
        # A plugged predictor's confidence is its own figure, stored as it said: only the
        # built-in rules' strength is calibrated into a probability of being right.
        parts = _present([("score", p.get("score"), "")])
        out.append(f"its confidence {_num(p.get('confidence'), '.2f')} ({own}'s own figure)"
                   + (f", {', '.join(parts)}" if parts else "") + _market(p, ctx))
    figures = _present([("price", tech.get("current_price"), ""), ("RSI", tech.get("rsi"), ""),
                        ("MACD histogram", tech.get("macd_histogram"), ""),
                        ("vs SMA20", tech.get("price_vs_sma20"), "%"),
                        ("volatility", tech.get("volatility_pct"), "%"),
                        ("volume score", vol.get("volume_quality_score"), ""),
                        ("sentiment", sent.get("score"), "")])
    if figures:
        out.append("inputs: " + ", ".join(figures)
                   + (f" ({sent.get('headline_count')} headlines)"
                      if sent.get("headline_count") else ""))
    prob = p.get("probability") if isinstance(p.get("probability"), dict) else {}
    cal = p.get("calibration") if isinstance(p.get("calibration"), dict) else {}
    if p.get("calibrated") and prob.get("1") is not None:
        fitted = "/".join(str(n) for n in (cal.get("fitted_on") or {}).values())
        out.append(f"probability of being right: {prob['1']} after 1 session"
                   + (f", {prob['5']} after 5" if prob.get("5") is not None else "")
                   + f" ({', '.join(_present([('', cal.get('method'), '')]))}"
                   + (f", record {cal['record']}" if cal.get("record") is not None
                      else ", a replay's walk-forward fit")
                   + (f", fitted on {fitted} scored outcomes (1/5 sessions)" if fitted else "")
                   + (f" through {cal['through']}" if cal.get("through") else "") + ")")
    elif rules:
        out.append("probability of being right: none yet, too little history to calibrate "
                   f"(fitted on {cal.get('fitted_on') or 0}); the strength is not a "
                   "probability")
    else:  # once, why the rules' lines are not here
        out.append(f"{own} reports no " + ("" if comp else "components, thresholds or ")
                   + "calibrated probability: its confidence is its own (only the built-in "
                   f"rules are calibrated); `trading report --predictor {name}` shows how "
                   "often its calls were right")
    model = inputs.get("model") or {}
    if model.get("version"):
        out.append(f"model: {model['version']}"
                   + (f" P(up) {model['probability']}" if model.get("probability") is not None
                      else " (gave no probability)"))
    else:
        out.append("model: none active")
    if isinstance(made_by, dict):
        details = [made_by.get("form"), made_by.get("sha256") and f"sha256 {made_by['sha256'][:12]}",
                   made_by.get("version") and f"version {made_by['version']}", made_by.get("file")]
        out.append(f"predictor: {made_by.get('name')} ({', '.join(d for d in details if d)})")
    elif made_by:
        out.append(f"predictor: {made_by}")
    reasons = p.get("reasons") or []
    if reasons:
        out.append("reasons:")
        out += [f"  - {r}" for r in reasons]
    outcomes = p.get("outcomes") or {}
    for h, o in sorted(outcomes.items()):
        out.append(f"after {h} session(s): {_pct(o.get('forward_return'))} "
                   f"({'right' if o.get('correct') else 'wrong'})")
    return out


def _present(items: list[tuple[str, object, str]]) -> list[str]:
    """``name value[unit]`` for each item that has a value (absent ones are left out)."""
    return [f"{name} {value}{unit}".strip() for name, value, unit in items
            if value is not None and value != ""]


def _market(p: dict, ctx: dict) -> str:
    if not p.get("market_context"):
        return ""
    return (f", market {p['market_context']}"
            + ("" if ctx.get("trend_pct") is None else f" (index {ctx['trend_pct']:+.2f}%)"))


def _table(title: str, columns: list[str], rows: list[list]) -> list[str]:
    import io
    from contextlib import redirect_stdout

    buf = io.StringIO()
    with redirect_stdout(buf):
        common.table(title, columns, rows)
    return buf.getvalue().splitlines()


def _stream(s: dict) -> str:
    """A stream in words: ``live, sample data, predictor rules, 1d``."""
    from trading.signals.predictors import label

    return (f"{s.get('origin', 'live')}, {s.get('source', 'unknown')} data, predictor "
            f"{label({'name': s.get('predictor')})}, {s.get('interval', '1d')}")


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
    interval: Optional[str] = typer.Option(None, "--interval", help="Only the calls made at "
                                           "this bar interval: 1d, 1h, 30m or 15m."),
    as_json: bool = common.JsonOption,
) -> None:
    """The scorecard: BUY/SELL and HOLD hit rates with 95% intervals beside baselines over the
    same sessions, and how well the stated probability of being right is calibrated."""
    if chart is not None and chart.suffix.lower() != ".png":
        raise common.fail("--chart needs a .png file name", common.EXIT_USAGE)
    if interval is not None:
        from trading.config import PREDICTOR_INTERVALS

        interval = interval.lower()
        if interval not in PREDICTOR_INTERVALS:
            raise common.fail(f"--interval {interval!r}: expected one of "
                              f"{', '.join(PREDICTOR_INTERVALS)}", common.EXIT_USAGE)
    client = common.Reading()  # the store itself, read-only, when the services are stopped
    if evaluate:  # this one writes: the services must answer
        with common.working("scoring outcomes"):
            done = client.services.call("prediction", "evaluate_outcomes",
                               {"source": source} if source else None)
        common.note(f"scored {done['evaluated']} outcome(s); {done['pending']} prediction(s) "
                    "wait for more sessions")
        for sym, msg in (done.get("errors") or {}).items():
            common.note(f"{sym}: {msg}")
    params: dict = {**({"origin": origin} if origin else {}),
                    **({"include_sample": True} if include_sample else {}),
                    **({"predictor": predictor} if predictor else {})}
    rep = client.call("prediction", "accuracy_report", params or None)
    # Each interval's calls are their own stream (issue 29): --interval keeps one of them.
    parts = {name: _interval_part(rep, part)
             for name, part in (rep.get("by_interval") or {}).items()}
    if interval is not None:
        rep = {**(parts.get(interval) or _interval_part(rep, {})), "interval": interval}
    if chart is not None and rep["horizons"]:
        from trading.ops.charts import reliability_diagram

        try:
            reliability_diagram(chart, rep)
        except OSError as exc:
            raise common.fail(f"cannot write the chart {chart}: {exc}") from exc
    if as_json:
        common.print_json(rep)
        return
    if interval is None and len(parts) > 1:
        for name, part in parts.items():
            print(f"-- {name} calls" + (" (daily bars)" if name == "1d" else
                                        f" (completed {name} bars)") + " --")
            print_scorecard(part, by_symbol=by_symbol)
    else:
        print_scorecard(rep, by_symbol=by_symbol)
    if chart is not None:
        print(f"reliability diagram: {chart}" if rep["horizons"] else "no chart: no outcomes")


def _interval_part(rep: dict, part: dict) -> dict:
    """The report of one interval's calls, in the whole report's shape."""
    horizons = part.get("horizons") or {}
    return {**rep, "predictions": part.get("predictions") or {}, "horizons": horizons,
            "by_predictor": part.get("by_predictor") or {},
            "headlines": part.get("headlines") or [],
            "outcomes": sum(card["n"] for card in horizons.values()), "repeats_folded": {},
            "by_interval": {k: v for k, v in (rep.get("by_interval") or {}).items()
                            if v is part}}


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
                  + (f"; raw strength over all {card['n']}: ECE "
                     f"{_num(all_raw['ece'], '.3f') or '-'}, Brier skill "
                     f"{_num(all_raw['brier_skill'], '+.3f') or '-'}"
                     if all_raw.get("n") else ""))
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


def _stream_source(value: Optional[str]) -> Optional[str]:
    """``--source`` of a stream: a kind (yahoo, sample, csv) or a whole spec (csv:DIR)."""
    if value is None or value in ("yahoo", "sample", "csv"):
        return value
    return common._source_spec(value)


def history(
    symbol: Optional[str] = typer.Argument(None, help="One symbol (default: all)."),
    since: Optional[str] = typer.Option(
        None, "--since", help="ISO date or date-time; Sydney time unless it has an offset."),
    limit: int = typer.Option(50, "--limit", "-n", min=1, max=1000),
    origin: Optional[str] = typer.Option(None, "--origin", help="live or replay (default: "
                                         "live)."),
    source: Optional[str] = typer.Option(
        None, "--source", "-s", callback=_stream_source,
        help="yahoo, sample, csv or csv:DIR: the data the predictions were made from "
        "(default: any)."),
    predictor: Optional[str] = typer.Option(
        None, "--predictor", help="module:Name or its short name, e.g. rules (default: the "
        "configured predictor)."),
    every: bool = typer.Option(False, "--all", help="Every stream (live and replay, every "
                               "predictor), each row labelled; the options above still "
                               "narrow it."),
    as_json: bool = common.JsonOption,
) -> None:
    """Stored predictions of one stream, newest first, with their outcomes so far (default:
    the live stream of the configured predictor; the others are named below the table)."""
    from trading import config

    if origin is not None and origin not in ("live", "replay"):
        raise common.fail(f"--origin {origin!r}: expected live or replay", common.EXIT_USAGE)
    chosen = {"origin": origin, "source": source, "predictor": predictor}
    if not every:
        chosen["origin"] = origin or "live"
        chosen["predictor"] = predictor or config.get()["predictor"]
    chosen = {k: v for k, v in chosen.items() if v}
    asked = {**({"symbol": symbol} if symbol else {}), **({"since": since} if since else {})}
    client = common.Reading()  # the store itself, read-only, when the services are stopped
    rows = client.call("prediction", "history", {"limit": limit, **asked, **chosen})
    others = [s for s in client.call("prediction", "streams", asked or None)
              if not _selects(chosen, s)]
    hint = _other_streams(others, chosen)
    if as_json:
        common.print_json(rows)
        if hint:
            common.note(hint)
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
                      _pct((out.get("5") or {}).get("forward_return")),
                      _stream_cell(p.get("stream") or {})])
    shown = _selection(chosen)
    if not table:
        asked_for = " ".join(filter(None, [symbol and f"for {symbol}",
                                           since and f"since {since}"]))
        print("no predictions stored" + (f" {asked_for}" if asked_for else "") + f" in {shown}"
              + ("" if others or asked_for else " yet (run `trading predict`)"))
    else:
        # Fits 80 columns: the return after 1 and 5 sessions as "+1", "+5"; the stream as
        # origin, data source and predictor (and the interval when it is not 1d).
        common.table(f"Prediction history, {shown}; +1, +5: returns after 1 and 5 sessions",
                     ["made (Sydney)", "symbol", "action", "conf", "price", "context", "+1",
                      "+5", "stream"], table, compact=True)
    if hint:
        print(hint)


def _selects(chosen: dict, stream: dict) -> bool:
    """Whether the selection ``chosen`` (origin, source, predictor) takes in ``stream``."""
    from trading.signals.predictors import label

    if chosen.get("origin") and stream.get("origin") != chosen["origin"]:
        return False
    want = chosen.get("source")
    if want and stream.get("source") != want.split(":", 1)[0]:
        return False
    who = chosen.get("predictor")
    if who and stream.get("predictor") != who and (
            ":" in who or label({"name": stream.get("predictor")}) != who):
        return False
    return True


def _selection(chosen: dict) -> str:
    """The streams shown, in words: ``the live stream of rules (any source, every
    interval)``; a row of an intraday interval says it (:func:`_stream_cell`)."""
    from trading.signals.predictors import label

    if not chosen:
        return "every stream"
    who = chosen.get("predictor")
    return (f"the {chosen.get('origin', 'live and replay')} stream"
            + (f" of {label({'name': who}) if ':' in who else who}" if who
               else "s of every predictor")
            + f" ({chosen.get('source') or 'any source'}, every interval)")


def _stream_cell(s: dict) -> str:
    from trading.signals.predictors import label

    cell = f"{s.get('origin', '?')} {s.get('source', '?')} {label({'name': s.get('predictor')})}"
    if s.get("interval", "1d") != "1d":  # an intraday predictor's calls (issue 29)
        cell += f" {s['interval']}"
    return cell


def _other_streams(others: list[dict], chosen: dict) -> str:
    """One line naming the streams not shown, each with the options that show it."""
    from trading.signals.predictors import label

    if not others:
        return ""
    parts = []
    for s in others[:4]:
        who = label({"name": s["predictor"]})
        flags = [f"--origin {s['origin']}" if s["origin"] != chosen.get("origin", s["origin"])
                 else "",
                 f"--source {s['source']}" if chosen.get("source") and not _selects(
                     {"source": chosen["source"]}, s) else "",
                 f"--predictor {who}" if chosen.get("predictor") and not _selects(
                     {"predictor": chosen["predictor"]}, s) else ""]
        parts.append(f"{s['predictions']:,} {s['origin']} {s['source']} {who} "
                     f"({' '.join(f for f in flags if f)})")
    more = f" and {len(others) - 4} more" if len(others) > 4 else ""
    return (f"also stored: {', '.join(parts)}{more}; --all shows every stream")


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
    symbols: list[str] = typer.Option(None, "--symbol", help="Symbols (default: configured; "
                                      "-s is --source in every command)."),
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
    interval: Optional[str] = typer.Option(None, "--interval", help="1d, or 1h, 30m, 15m: "
                                           "predict each completed bar of SYMBOL.1h.csv "
                                           "(default: predictor_interval)."),
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
    interval = _interval_override(interval) or cfg["predictor_interval"]
    try:
        chosen = _replay_predictor(cfg, params.predictor(predictor))
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

        def get_bars(symbol: str, period: str, _source: str | None = None,
                     bar_interval: str = "1d"):  # always `source`
            fetched = local.fetch([symbol], dt.date.min, dt.date.max) \
                if bar_interval == "1d" else local.fetch_intraday([symbol], None, None,
                                                                 bar_interval)
            if symbol in fetched.errors:
                raise fetched.errors[symbol]
            # As market-data's get_bars answers (prices to six decimals), so a replayed call
            # sees the numbers a live one would.
            return {"symbol": symbol, "source": source, "bars": fetched.bars[symbol].to_rows(),
                    "reading": fetched.readings.get(symbol)}

        result = history_replay.replay(Store(cfg.db_path), cfg, get_bars, wanted,
                                       source=source, start=start, end=end, every=every,
                                       predictors=runs, interval=interval, on_symbol=step,
                                       reader=True)  # get_bars reads files: fork-safe
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
        print(line if interval == "1d" else line.replace("sessions:", f"{interval} bars:", 1))
    print(f"scored {result['outcomes']['evaluated']} outcomes. "
          "See `trading report --origin replay`.")


def _interval_override(option: str | None) -> str | None:
    """The interval one command asks for: ``--interval`` (checked here: one line, exit 2),
    else a ``TRADING_PREDICTOR_INTERVAL`` set for this command (passed on the call, as the
    predictor is: the services run with their own configuration); None: the configured one."""
    from trading import config

    if option is not None:
        if option.lower() not in config.PREDICTOR_INTERVALS:
            raise common.fail(f"--interval {option!r}: expected one of "
                              f"{', '.join(config.PREDICTOR_INTERVALS)}", common.EXIT_USAGE)
        return option.lower()
    cfg = config.get()
    if cfg.source_of("predictor_interval").startswith("env "):
        return cfg["predictor_interval"]
    return None


def unchanged_lines(result: dict) -> list[str]:
    """One line for the symbols an intraday call did not predict again: their last completed
    bar is the one their latest stored call was made from (nothing is stored twice)."""
    same = result.get("unchanged") or {}
    if not same:
        return []
    bars = sorted(set(same.values()))
    return [f"no new completed {result.get('interval')} bar since the last call of "
            f"{', '.join(same)} (last bar {', '.join(bars)}): nothing stored for "
            f"{'it' if len(same) == 1 else 'them'}"]


def _replay_predictor(cfg, spec: str | None):
    """The predictor a replay asks: the built-in rules here; any other (the trader's code)
    in the prediction service, inside its sandbox, never in this process or a child of it
    (:mod:`trading.signals.remote_predictor`). Without an installed service the prediction
    handler runs here, as for every command, and starts the predictor in a child process."""
    from trading.signals import predictors
    from trading.signals.remote_predictor import RemotePredictor

    spec = spec or cfg["predictor"]
    if spec == predictors.DEFAULT:
        return predictors.from_config(cfg, spec)
    return RemotePredictor(common.client(), spec).start(cfg["predictor_timeout"])


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
