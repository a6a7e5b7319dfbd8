#!/usr/bin/env python3
"""One monolith predictor on daily and on hourly bars over the same days (issue 29's note).

    .venv/bin/python bench/intraday_compare.py                      # writes /tmp/intraday-compare
    .venv/bin/python bench/intraday_compare.py --first 2025-06-02 --symbols CBA,BHP

1. Writes a folder of local files: each symbol's daily file from ``tests/data/asx-daily``
   (real, adjusted bars) and its ``SYMBOL.1h.csv`` made by ``tests/data/asx-intraday/
   generate.py``'s own functions over ``--first``..``--last`` (synthetic hours tied to each
   real day: the day's real open, close as the closing-auction bar, real volume), the index
   ``^AXJO`` too.
2. Replays the seed-style monolith class ``examples/predictors/momentum.py``
   (``momentum:EnhancedMarketAwarePredictor``) with the real command, once per interval,
   into a fresh state directory: ``trading replay DIR --predictor ... --interval 1d|1h
   --start S`` (S: the fifth session of the hourly files, the first whose window of five
   sessions is whole, so both predict the same sessions).
3. Prints, per interval: the calls, BUY/SELL/HOLD, the hit rates at 1 and 5 sessions with n
   and the 95 % (Wilson) interval, the way ``trading report`` counts them (a symbol's session
   once: its last call) and over every call (the hourly calls of a session share their end
   close, so that interval is too narrow); how often each ``tech_data`` field was ``None``;
   and for one sample session what each ``tech_data`` field of the daily call and of an
   hourly call was computed from.

The hourly bars are synthetic paths between real daily opens and closes, so an hourly
indicator here measures the generator's noise as much as the market: the point is the
machinery and the contrast in inputs, not a verdict on hourly trading.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DAILY = ROOT / "tests" / "data" / "asx-daily"
GENERATOR = ROOT / "tests" / "data" / "asx-intraday" / "generate.py"
PREDICTOR = "momentum:EnhancedMarketAwarePredictor"
FIELDS = ("current_price", "rsi", "macd_histogram", "price_vs_sma20", "tech_score")


def generator():
    spec = importlib.util.spec_from_file_location("intraday_generate", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_folder(folder: Path, symbols: list[str], first: str, last: str) -> None:
    """The daily files and hourly files made from them (the fixture's generator, re-aimed)."""
    from trading.market import asx

    gen = generator()
    folder.mkdir(parents=True, exist_ok=True)
    for i, symbol in enumerate(symbols):
        daily = DAILY / f"{symbol}.csv"
        shutil.copy(daily, folder / daily.name)
        gen.DAILY = daily
        gen.WINDOWS = [(first, last)]
        gen.EARLY_CLOSES = {d.isoformat() for d in asx.sessions_between(
            dt.date.fromisoformat(first), dt.date.fromisoformat(last)) if asx.is_early_close(d)}
        gen.MISSING = None  # every hour present
        rng = gen.np.random.default_rng(gen.SEED + i)
        quarter = gen.fifteen_minutes(_table(daily), rng)
        gen.yfinance_shape(gen.hourly(quarter)).to_csv(folder / f"{symbol}.1h.csv")


def _table(path: Path):
    """A daily file as the generator's table (Open, Close, Volume by day), whatever its
    layout (the index's is yfinance download()'s), read by the project's own reader."""
    import pandas as pd

    from trading.market.reading import read_csv

    bars = read_csv(path)[0]
    volume = [0.0 if v != v else v for v in bars.volume]  # the index has none
    return pd.DataFrame({"Open": bars.open, "Close": bars.close, "Volume": volume},
                        index=pd.Index([d[:10] for d in bars.dates], name="day"))


def replay(folder: Path, state: Path, interval: str, start: str, symbols: list[str]) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADING_")}
    env.update(TRADING_STATE_DIR=str(state), TRADING_CACHE_DIR=str(state / "cache"),
               TRADING_CONFIG=str(state / "none.toml"), TRADING_IN_PROCESS="always",
               TRADING_PREDICTORS_DIR=str(ROOT / "examples" / "predictors"),
               TRADING_DIRECTIONAL_CALLS="true")
    trading = Path(sys.executable).with_name("trading")
    codes = [s for s in symbols if not s.startswith("^")]
    cmd = [str(trading), "replay", str(folder), "--predictor", PREDICTOR, "--interval",
           interval, "--start", start, "--json"]
    for code in codes:
        cmd += ["--symbol", code]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if run.returncode:
        sys.exit(f"{' '.join(cmd)} failed: {run.stderr.strip()}")
    return json.loads(run.stdout)


def rate(hits: int, n: int) -> str:
    from trading.signals.scorecard import wilson

    if not n:
        return "-"
    lo, hi = wilson(hits, n)
    return f"{hits / n:.1%} (n {n}, {lo:.1%}-{hi:.1%})"


def tables(store, intervals: list[str]) -> None:
    from trading.signals import outcomes

    rep = outcomes.accuracy(store, "replay")
    print("| interval | calls | BUY | SELL | HOLD | BUY/SELL right after 1 session |"
          " HOLD right after 1 | BUY/SELL right after 5 | HOLD right after 5 |")
    print("|---|---:|---:|---:|---:|---|---|---|---|")
    for interval in intervals:
        counts = dict(tuple(r) for r in store.query(
            "SELECT action, count(*) FROM predictions WHERE interval = ? GROUP BY action",
            (interval,)))
        cards = rep["by_interval"].get(interval, {}).get("horizons", {})
        cells = []
        for h in ("1", "5"):
            acts = (cards.get(h) or {}).get("by_action", {})
            for key in ("BUY/SELL", "HOLD"):
                a = acts.get(key) or {"hits": 0, "n": 0}
                cells.append(rate(a["hits"], a["n"]))
        print(f"| {interval} (report: a symbol's session once) | {sum(counts.values())} | "
              f"{counts.get('BUY', 0)} | {counts.get('SELL', 0)} | {counts.get('HOLD', 0)} | "
              + " | ".join(cells) + " |")
        cells = []
        for h in (1, 5):
            for cond in ("p.action != 'HOLD'", "p.action = 'HOLD'"):
                hits, n = store.query(
                    "SELECT coalesce(sum(o.correct), 0), count(*) FROM outcomes o JOIN"
                    f" predictions p ON p.id = o.prediction_id WHERE p.interval = ? AND {cond}"
                    " AND o.horizon = ?", (interval, h))[0]
                hits, n = int(hits), int(n)
                cells.append(rate(hits, n))
        print(f"| {interval} (every call) | | | | | " + " | ".join(cells) + " |")
    print()
    print("| interval | " + " | ".join(f"{f} None" for f in FIELDS) + " |")
    print("|---|" + "---:|" * len(FIELDS))
    for interval in intervals:
        total = store.query("SELECT count(*) FROM predictions WHERE interval = ?",
                             (interval,))[0][0]
        nones = [store.query(
            "SELECT count(*) FROM predictions WHERE interval = ? AND json_extract(inputs,"
            f" '$.market.technical.{f}') IS NULL", (interval,))[0][0] for f in FIELDS]
        print(f"| {interval} | " + " | ".join(f"{n / total:.0%}" for n in nones) + " |")


def sample(store, folder: Path, symbol: str, on: str) -> None:
    """What each tech_data field of one session's daily call and of its 15:00 hourly call
    was computed from."""
    from trading.market import intraday_summary
    from trading.market.reading import read_csv
    from trading.market.summary import since_last_gap

    row = store.query(
        "SELECT session, json_extract(inputs, '$.market') AS market, action FROM predictions"
        " WHERE interval = '1h' AND symbol = ? AND json_extract(inputs, '$.market.as_of')"
        " LIKE '%T15:00:00%' AND session >= ? ORDER BY session LIMIT 1", (symbol, on))[0]
    hourly = json.loads(row["market"])
    bar = hourly["as_of"]
    day = store.query("SELECT json_extract(inputs, '$.market') AS market, action FROM"
                      " predictions WHERE interval = '1d' AND symbol = ? AND session = ?",
                      (symbol, row["session"]))[0]
    daily = json.loads(day["market"])
    hbars = read_csv(folder / f"{symbol}.1h.csv", interval="1h")[0]
    upto = hbars[:hbars.dates.index(bar) + 1]
    w = intraday_summary.window(upto, "1h")
    dbars = read_csv(folder / f"{symbol}.csv")[0]
    d = since_last_gap(dbars[:dbars.dates.index(row["session"]) + 1])
    n, first, last = len(w), w.dates[0], w.dates[-1]
    print(f"sample: {symbol}, session {row['session']}: daily call {day['action']} (made at "
          f"the close), hourly call {row['action']} (made from the {bar} bar, when the "
          "feed had all of it: its end plus the 20-minute delay)")
    print()
    print("| tech_data field | 1d value | computed from (1d) | 1h value | computed from (1h) |")
    print("|---|---:|---|---:|---|")
    dt_, ht = daily["technical"], hourly["technical"]
    span_d = f"{len(d)} daily closes {d.dates[0]}..{d.dates[-1]} (every bar since the last gap)"
    span_h = f"the {n} complete 1h bars of the last 5 sessions, {first}..{last}"
    explain = {
        "current_price": ("the session's close (adjusted)", f"the close of the {bar} bar"),
        "rsi": (f"Wilder RSI(14 sessions) over {span_d}",
                f"Wilder RSI(14 bars) over {span_h}"),
        "macd_histogram": (f"MACD(12,26,9) in sessions over {span_d}",
                           f"MACD(12,26,9) in bars over {span_h} (needs 34 bars)"),
        "price_vs_sma20": ("% above the mean of the last 20 daily closes",
                           "% above the mean of the last 20 complete 1h bars' closes"),
        "tech_score": ("0.5 + mean of RSI, MACD and SMA signals / 2 (those not None)",
                       "the same formula over the 1h values"),
    }
    for f in FIELDS:
        print(f"| {f} | {dt_.get(f)} | {explain[f][0]} | {ht.get(f)} | {explain[f][1]} |")
    dv, hv = daily["volume"], hourly["volume"]
    print(f"| volume_data.volume_trend | {dv.get('volume_trend')} | 5- over 20-session mean"
          f" volume - 1 | {hv.get('volume_trend')} | 5- over 20-bar mean volume - 1 (the "
          "16:00 auction bar holds ~1/5 of a day's volume) |")
    print(f"| volume_data.price_volume_correlation | {dv.get('price_volume_correlation')} | "
          f"r of 20 daily returns and volumes | {hv.get('price_volume_correlation')} | r of "
          "the last 20 bars' returns and volumes |")
    dm, hm = daily["market_context"], hourly["market_context"]
    print(f"| market_data.context (trend_pct) | {dm['context']} ({dm['trend_pct']}) | ^AXJO "
          f"over 5 sessions | {hm['context']} ({hm['trend_pct']}) | ^AXJO's 1h bars over the"
          " same 5-session window, first close to last, up to the bar |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "intraday-compare")
    ap.add_argument("--first", default="2025-01-02", help="first session of the 1h files")
    ap.add_argument("--last", default="2025-12-31", help="last session of the 1h files")
    ap.add_argument("--symbols", default="CBA,ANZ,NAB,WBC,MQG,COL,BHP")
    ap.add_argument("--sample", default="2025-10-15", help="the sample call's session (the "
                    "first with a 15:00 hourly call from it); ^AXJO's daily file starts "
                    "2025-09-08, so earlier calls have no market context")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from trading.market import asx
    from trading.runtime.store import Store

    symbols = [f"{s}.AX" for s in args.symbols.split(",")] + ["^AXJO"]
    folder, state = args.dir / "bars", args.dir / "state"
    shutil.rmtree(args.dir, ignore_errors=True)
    write_folder(folder, symbols, args.first, args.last)
    start = asx.sessions_between(dt.date.fromisoformat(args.first),
                                 dt.date.fromisoformat(args.last))[4].isoformat()
    print(f"folder {folder}: {len(symbols) - 1} symbols and ^AXJO, daily files as kept in "
          f"tests/data/asx-daily, 1h files {args.first}..{args.last}; both intervals replayed "
          f"from {start} (the first session whose 5-session 1h window is whole) with "
          f"{PREDICTOR}")
    runs = {}
    for interval in ("1d", "1h"):
        t = dt.datetime.now()
        runs[interval] = replay(folder, state, interval, start, symbols)
        took = (dt.datetime.now() - t).total_seconds()
        print(f"trading replay --interval {interval}: {runs[interval]['predictions']} calls "
              f"in {took:.1f} s")
    print()
    store = Store(state / "trading.db")
    tables(store, ["1d", "1h"])
    print()
    sample(store, folder, symbols[0], args.sample)
    store.close()


if __name__ == "__main__":
    main()
