"""``trading train``, ``trading models``, ``trading activate``, ``trading backtest``.

Training and backtests take seconds to minutes, longer than the client's default timeout
(config ``timeout``, 30 s), so those calls pass their own (``--timeout``, default an hour).

The progress bar: one JSON-RPC call cannot stream, so the long call runs in a thread and the
main thread polls the service's ``progress()`` method a few times a second over a *second*
connection (a second :class:`~trading.runtime.client.Client`; the first one's connection is busy
waiting for the answer). The service serves each connection on its own thread, so the poll is
answered while the job runs. When the handler runs in-process (no socket installed) both
calls go to the same in-process service object, so the same poll works without sockets.
The bar is drawn on stderr, so ``--json`` output stays clean.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Optional

import typer

from trading import config as _config
from trading.runtime.client import Client
from trading.errors import ClientError
from trading.market.periods import HISTORY_YEARS

from . import common

SERVICE = "training"
LONG_TIMEOUT = 3600.0

TimeoutOption = typer.Option(LONG_TIMEOUT, "--timeout", min=0.1,
                             help="Seconds to wait for the answer.")
SourceOption = common.SourceOption("Bars from: yahoo, sample or csv:DIR (default: the "
                                   "configured source).")


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.command("models")(models)
    app.command("activate")(activate)
    app.command("backtest")(backtest)




def run_with_progress(method: str, params: dict[str, Any], timeout: float, label: str) -> Any:
    """Call ``method`` on the training service while drawing its progress on stderr."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    client = common.client()
    in_process = client.in_process == "always" or (
        client.in_process == "auto" and not os.path.exists(client.socket_path(SERVICE)))
    poller = client if in_process else Client(_config.get(), timeout=5.0, in_process="never")
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["result"] = client.call(SERVICE, method, params, timeout=timeout)
        except BaseException as exc:  # re-raised in the main thread
            outcome["error"] = exc

    thread = threading.Thread(target=work, name=f"{method}-call", daemon=True)
    console = Console(stderr=True)
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(),
                      TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                      console=console, transient=True,
                      disable=not console.is_terminal) as bar:  # pipes and cron: no bar
            task = bar.add_task(label, total=None)
            thread.start()
            while thread.is_alive():
                thread.join(0.3)
                try:
                    p = poller.call(SERVICE, "progress")
                except ClientError:
                    continue  # the service is starting up, or busy answering: ask again
                if p:
                    bar.update(task, description=f"{p['job']}: {p['stage']}",
                               total=p["total"], completed=p["done"])
    finally:
        if poller is not client:
            poller.close()
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("result")


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "-"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def train(
    symbols: list[str] = typer.Argument(None, help="Symbols (default: config symbols)."),
    symbols_from: Optional[str] = common.SymbolsFromOption(),
    horizon: int = typer.Option(1, "--horizon", help="Label: sign of the return over N sessions."),
    folds: int = typer.Option(8, "--folds", help="Walk-forward folds."),
    start: Optional[str] = typer.Option(None, "--start", help="Train on no session before "
                                        "this day (YYYY-MM-DD; default: a csv:DIR folder's "
                                        f"whole record, {HISTORY_YEARS} years of others)."),
    end: Optional[str] = typer.Option(None, "--end", help="Use no bar after this day "
                                      "(YYYY-MM-DD), to backtest the model after it."),
    source: Optional[str] = SourceOption,
    timeout: float = TimeoutOption,
    as_json: bool = common.JsonOption,
) -> None:
    """Train a model with walk-forward validation and register it (not activated).

    Up to 1000 symbols (a watch list: --symbols-from), one symbol's bars at a time."""
    params: dict[str, Any] = {"horizon": horizon, "folds": folds}
    symbols = common.universe(symbols, symbols_from)
    if symbols:
        params["symbols"] = symbols
    if source:
        params["source"] = source
    for key, value in (("start", start), ("end", end)):
        if value:
            params[key] = value
    result = run_with_progress("train", params, timeout, "training")
    if as_json:
        common.print_json(result)
        return
    m = result["metrics"]
    oos = m["out_of_sample"]
    rows = [[name, _fmt(s["accuracy"]), _fmt(s["auc"]), _fmt(s["brier"]), s["n"]]
            for name, s in (("model", oos["model"]), ("majority class", oos["majority"]),
                            ("rules", oos["rules"]))]
    common.table(f"model {result['version']}: out of sample, {m['folds']} walk-forward folds, "
                 f"horizon {m['horizon']}",
                 ["predictor", "accuracy", "AUC", "Brier", "rows"], rows)
    print(f"trained on {_symbols(m['symbols'])} {m['train_start']}..{m['train_end']} "
          f"({m['rows']} rows; up share in the tested rows {m['up_share_tested']:.3f})")
    print_left_out(m)
    if m.get("row_budget"):
        print(f"left out: {m['row_budget']['why']}")
    if m.get("features_dropped"):
        print("features left out (share of rows present): "
              + ", ".join(f"{k} {v:.0%}" for k, v in m["features_dropped"].items()))
    c = m.get("calibration") or {}
    if c.get("rows"):
        rows = [[name, _fmt(c[key]["brier"]), _fmt(c[key]["brier_skill"], 3),
                 _fmt(c[key]["ece"], 3)]
                for key, name in (("calibrated", "model, calibrated"), ("raw", "model, raw"),
                                  ("majority", "majority class"), ("rules", "rules"))]
        common.table(f"P(up) as a forecast on {c['rows']} out-of-sample rows (the first "
                     f"block, {c['uncalibrated_rows']} rows, had nothing to calibrate on)",
                     ["predictor", "Brier", "skill vs climatology", "ECE"], rows)
    v = m.get("verdict") or {}
    if v.get("beats_majority"):
        print(f"the model beats the walk-forward base rate: {v['why']}")
        print(f"activate with: trading activate {result['version']}")
    else:
        print(f"the model does NOT beat the walk-forward base rate: {v.get('why')}; "
              f"`trading activate {result['version']}` refuses it unless --force")


def models(as_json: bool = common.JsonOption) -> None:
    """List registered models, newest first (* marks the active one)."""
    result = common.client().call(SERVICE, "models")
    if as_json:
        common.print_json(result)
        return
    if not result:
        print("no models yet: run `trading train`")
        return
    rows = []
    for r in result:
        oos = r["metrics"].get("out_of_sample", {})
        rows.append(["*" if r["active"] else "", r["version"], r["horizon"],
                     f"{r['train_start']}..{r['train_end']}",
                     _fmt(oos.get("model", {}).get("accuracy")),
                     _fmt(oos.get("model", {}).get("auc")),
                     _fmt(oos.get("majority", {}).get("accuracy")),
                     _fmt(oos.get("rules", {}).get("accuracy"))])
    common.table("models (out-of-sample accuracy and AUC; version = creation time UTC)",
                 ["", "version", "h", "data", "acc", "AUC", "acc majority", "acc rules"], rows)


def activate(
    version: str = typer.Argument(..., help="Model version (see `trading models`); 'none' "
                                            "to predict without a model."),
    force: bool = typer.Option(False, "--force", help="Activate a model that does not beat "
                               "the walk-forward base rate out of sample."),
    as_json: bool = common.JsonOption,
) -> None:
    """Make a model the one predictions use (refused unless its Brier skill out of sample
    against the walk-forward base rate has a 95% interval above zero, or --force)."""
    v = None if version.lower() == "none" else version
    result = common.client().call(SERVICE, "activate",
                                  {"version": v, **({"force": True} if force else {})})
    if as_json:
        common.print_json(result)
        return
    print(f"active model: {result['version']}" if result else "no active model")


def backtest(
    symbols: list[str] = typer.Argument(None, help="Symbols (default: config symbols)."),
    symbols_from: Optional[str] = common.SymbolsFromOption(),
    source: Optional[str] = SourceOption,
    start: Optional[str] = typer.Option(None, "--start", help="First day (YYYY-MM-DD; "
                                        "default: where indicators are warm in a csv:DIR "
                                        f"folder's whole record, {HISTORY_YEARS} years back "
                                        "for others)."),
    end: Optional[str] = typer.Option(None, "--end", help="Last day (YYYY-MM-DD)."),
    cost_bps: float = typer.Option(10.0, "--cost-bps", help="Cost per entry or exit, in bps."),
    no_model: bool = typer.Option(False, "--no-model", help="Ignore the active model."),
    predictor: Optional[str] = typer.Option(None, "--predictor", help="module:Name (default: "
                                            "the configured predictor)."),
    compare: bool = typer.Option(False, "--compare", help="Also the built-in rules, side by "
                                 "side with the predictor and the baselines."),
    chart: Optional[Path] = typer.Option(None, "--chart", help="Write the equity curves (PNG)."),
    interval: Optional[str] = typer.Option(
        None, "--interval", help="The bars the predictor's inputs are computed over: 1d, or "
        "1h, 30m or 15m bar by bar, acting on the call each session ends with (default: the "
        "configured predictor_interval)."),
    timeout: float = TimeoutOption,
    as_json: bool = common.JsonOption,
) -> None:
    """Replay history day by day through the predictor and score the signals.

    A call is judged right close to close (the next session's close against the signal's
    own); acting on it is traded from the next open to the open after, since the signal needs
    a close that settles after the market has shut. Up to 1000 symbols (--symbols-from), one
    symbol's bars at a time."""
    if chart is not None and chart.suffix.lower() != ".png":
        raise common.fail("--chart needs a .png file name", common.EXIT_USAGE)
    symbols = common.universe(symbols, symbols_from)
    params: dict[str, Any] = {"cost_bps": cost_bps, "use_model": not no_model}
    if compare:
        params["compare"] = True
    from trading.cli.predict import _interval_override

    for key, value in (("symbols", symbols or None), ("source", source),
                       ("start", start), ("end", end), ("predictor", predictor),
                       ("interval", _interval_override(interval))):
        if value is not None:
            params[key] = value
    result = run_with_progress("backtest", params, timeout, "backtest")
    if chart is not None:
        write_chart(result, chart)
    if as_json:
        common.print_json(result)
        return
    print_backtest(result)
    if chart is not None:
        print(f"chart: {chart}")


def print_backtest(r: dict[str, Any]) -> None:
    pa = r["per_action"]
    common.table(
        f"backtest {r['start']}..{r['end']}: {r['sessions']} sessions, "
        f"{len(r['symbols'])} symbols, {r['signals']} signals"
        + (f" (inputs from {r['interval']} bars; each session's last call acted on)"
           if r.get("interval", "1d") != "1d" else ""),
        ["action", "count", "mean next-day return %", "up share"],
        [[a, pa[a]["count"], _fmt(pa[a]["mean_forward_pct"]), _fmt(pa[a]["up_share"])]
         for a in ("BUY", "HOLD", "SELL")])
    same = r.get("total_return_pct_on_index_sessions") or {}
    rows = []
    for key, name in (("strategy", f"long on BUY ({r['cost_bps']:g} bps/trade)"),
                      ("buy_and_hold", "buy and hold (equal weight)"),
                      ("index", f"index {r.get('index_symbol', '')}")):
        s = r[key]
        rows.append([name, _fmt(s["total_return_pct"], 2), _fmt(s["max_drawdown_pct"], 2),
                     _fmt(s["sharpe"], 2), _fmt(same.get(key), 2)])
    common.table("equity", ["curve", "total return %", "max drawdown %", "Sharpe",
                            "return % on index days"], rows)
    hit = r["hit_rate"]
    print(f"hit rate (BUY up, SELL down): {_fmt(hit)} on {r['calls']} calls; "
          f"{r['trades']} trades, long {r['exposure']:.1%} of symbol-days")
    idx = r["index"]
    print(f"index covers {idx['sessions_covered']} of {r['sessions']} sessions "
          f"({idx['sessions_missing']} missing: no index curve there, market context NEUTRAL "
          "fallback)")
    m = r.get("model") or {}
    print("model: " + (f"{m['version']} (saw prices up to {m['train_end']})" if m.get("used")
                       else f"not used: {m.get('reason')}"))
    made_by = r.get("predictor") or {}
    if made_by:
        print(f"predictor: {made_by.get('name')}" + (f" (sha256 {made_by['sha256'][:12]})"
                                                      if made_by.get("sha256") else ""))
    for problem, e in (r.get("errors") or {}).items():
        print(f"not predicted: {e['count']} ({problem}; first: {e['first']})")
    if r.get("comparison"):
        from trading.signals.predictors import label

        common.table(
            f"side by side, {r['start']}..{r['end']} ({r['cost_bps']:g} bps per trade): "
            "long on BUY, flat otherwise",
            ["predictor", "BUY", "SELL", "hit rate", "return %", "max dd %", "Sharpe",
             "long", "beyond drift, bps/call (95%)"],
            [[c["name"] if c["kind"] == "baseline" else label({"name": c["name"]}),
              c["buy"], c["sell"],
              _fmt(c["hit_rate"]), _fmt(c["total_return_pct"], 2),
              _fmt(c["max_drawdown_pct"], 2), _fmt(c["sharpe"], 2), f"{c['exposure']:.1%}",
              _edge(c.get("edge"))]
             for c in r["comparison"]])
        first = r["comparison"][0]
        dropped = r.get("comparison_dropped") or 0
        print(f"all on the same {first['signals']:,} symbol-sessions"
              + (f"; {dropped:,} dropped for all because a contestant could not score them"
                 if dropped else "; none dropped"))
        print("hit rate: BUY right when the next session closed up, SELL when down; for "
              "always BUY it is the share of up sessions. Returns: in at the next open, "
              "out at the open after. Beyond drift: a call's next-session return after "
              "10 bps a side minus the mean of every symbol that session, with a block-"
              "bootstrap interval over sessions (docs/choosing-the-predictor.md)")
    print_left_out(r)


def _edge(e: dict[str, Any] | None) -> str:
    if not e or not e.get("calls"):
        return ""
    ci = e.get("ci95")
    text = f"{e['mean_beyond_drift'] * 1e4:+.1f}"
    return text + (f" ({ci[0] * 1e4:+.1f} to {ci[1] * 1e4:+.1f})" if ci else "")


SHOWN = 10  # symbols named per line of what was left out; --json has them all


def _symbols(symbols: list[str]) -> str:
    """A universe in one line: all of a few symbols, the first of many and how many more."""
    if len(symbols) <= SHOWN:
        return ", ".join(symbols)
    return f"{len(symbols)} symbols ({', '.join(symbols[:3])}, ...)"


def print_left_out(r: dict[str, Any]) -> None:
    """What the job did not use, and why: skipped symbols, and bars outside the dates."""
    def lines(what: str, items: dict[str, str]) -> None:
        for i, (k, v) in enumerate(items.items()):
            if i == SHOWN:
                print(f"{what}: {len(items) - SHOWN} more (--json lists them all)")
                break
            print(f"{what}: {k}: {v}")

    lines("skipped", r.get("skipped") or {})
    lines("not used", r.get("left_out") or {})


def write_chart(r: dict[str, Any], path: Path) -> None:
    """The three equity curves as a PNG (matplotlib, Agg: no display needed)."""
    import datetime as dt

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = r["curves"]
    dates = [dt.date.fromisoformat(d) for d in c["dates"]]

    def series(values):
        return [float("nan") if v is None else v for v in values]

    fig, ax = plt.subplots(figsize=(10, 5.5), dpi=110)
    ax.plot(dates, series(c["strategy"]), label=f"long on BUY, flat otherwise "
            f"({r['cost_bps']:g} bps per trade)", color="tab:blue", linewidth=1.6)
    ax.plot(dates, series(c["buy_and_hold"]), label="buy and hold (equal weight)",
            color="tab:gray", linewidth=1.2)
    if any(v is not None for v in c["index"]):
        ax.plot(dates, series(c["index"]), label=f"index {r.get('index_symbol', '')} "
                "(only where data exists, 1.0 at its first day)", color="tab:orange",
                linewidth=1.2)
    ax.axhline(1.0, color="black", linewidth=0.5)
    ax.set_title(f"Backtest {r['start']} .. {r['end']}: {_symbols(r['symbols'])}", fontsize=10)
    ax.set_ylabel("equity (start = 1.0)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize=9)
    s = r["strategy"]
    ax.text(0.99, 0.02, f"hit rate {_fmt(r['hit_rate'], 3)} on {r['calls']} calls; "
            f"strategy max drawdown {_fmt(s['max_drawdown_pct'], 2)}%",
            transform=ax.transAxes, ha="right", va="bottom", fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    try:
        fig.savefig(path)
    except OSError as exc:
        raise common.fail(f"cannot write the chart {path}: {exc}") from exc
    finally:
        plt.close(fig)
