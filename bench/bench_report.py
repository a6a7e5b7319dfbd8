#!/usr/bin/env python3
"""``trading report`` over a large prediction store: time and peak memory (issue 26).

    .venv/bin/python bench/bench_report.py [--n 1000000] [--rounds 3] [--json-only]

The store holds ``--n`` replay predictions, ``--symbols`` symbols (200) by ``n / symbols``
sessions, each with its 1- and 5-session outcomes (the last sessions of a symbol wait for
theirs, as in a real store). Its rows are copied from a real replay of ``tests/data/asx-daily``
(run once, in-process): the same JSON columns, actions, probabilities (NULL for the early
predictions made before a calibration existed), returns and right/wrong, spread over
synthetic symbols and weekdays from 2006 with SQL ``INSERT ... SELECT``, so the store is as
heavy to read as one a long replay writes (about 2.3 kB a prediction: 2.3 GB at a million).
The store is kept under ``--cache`` (default ``/tmp/bench-report``), keyed by its shape, so a
rerun only times.

Timed: ``trading report``, ``trading report --json`` and ``trading report --by-symbol``, each a
fresh process with the store's environment (no services installed: the command runs the
prediction handler in-process and says so, as it does for a user without the units), the
way a person runs it; one untimed run first, so the page cache is warm for every subject.
Peak RSS is the command's high-water mark plus its reading child's (a large store is read
in two processes; bench/peaks.py). Target: under 5 s at a million predictions.
Prints a table, then one JSON line; exits 1 when a median misses the target.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

from peaks import Peaks  # bench/peaks.py

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
TRADING = str(Path(PYTHON).with_name("trading"))
SEED_DATA = REPO / "tests" / "data" / "asx-daily"
NOW = "2026-03-02T12:00:00+11:00"
TARGET_S = 5.0

COMMANDS = {
    "trading report": ["report"],
    "trading report --json": ["report", "--json"],
    "trading report --by-symbol": ["report", "--by-symbol"],
}

# Every column but id, symbol, created_at, session, which each copy gets anew.
COPIED = ("action, confidence, score, price, market_context, model_version, data_stale, source,"
          " origin, run_id, prediction, inputs, data_source, as_of, probability_1, probability_5")


def environment(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADING_", "LISTEN_"))}
    env.update(TRADING_STATE_DIR=str(root / "state"), TRADING_CACHE_DIR=str(root / "cache"),
               TRADING_RUNTIME_DIR=str(root / "run"), TRADING_CONFIG=str(root / "none.toml"),
               TRADING_NOW=NOW, TRADING_LOG_LEVEL="WARNING")
    return env


def seed(cache: Path) -> Path:
    """The store of one real replay of the sample histories (made once, then kept)."""
    root = cache / "seed"
    db = root / "state" / "trading.db"
    if not db.exists():
        shutil.rmtree(root, ignore_errors=True)
        subprocess.run([TRADING, "replay", str(SEED_DATA)], env=environment(root), check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return db


def weekdays(n: int, start: dt.date = dt.date(2006, 1, 2)) -> list[str]:
    out, day = [], start
    while len(out) < n:
        if day.weekday() < 5:
            out.append(day.isoformat())
        day += dt.timedelta(days=1)
    return out


def build(cache: Path, n: int, symbols: int) -> tuple[Path, float]:
    """The store of ``n`` predictions (kept under ``cache``); returns its root and how long
    building it took (0 when it was kept from an earlier run)."""
    sessions = -(-n // symbols)
    root = cache / f"n{n}-s{symbols}"
    db = root / "state" / "trading.db"
    if (root / "done").exists():
        return root, 0.0
    t0 = time.perf_counter()
    shutil.rmtree(root, ignore_errors=True)
    db.parent.mkdir(parents=True)
    shutil.copyfile(seed(cache), db)  # the schema, migrated, with the seed rows to copy
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode = DELETE")  # one writer, no WAL to checkpoint after
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA temp_store = MEMORY")
    conn.execute("BEGIN")
    conn.execute("CREATE TEMP TABLE seed_p AS SELECT row_number() OVER (ORDER BY id) - 1 AS k,"
                 f" id, {COPIED} FROM predictions")
    conn.execute("CREATE TEMP TABLE seed_o AS SELECT * FROM outcomes")
    conn.execute("CREATE INDEX temp.seed_o_by_id ON seed_o (prediction_id)")
    for table in ("outcomes", "predictions", "events"):
        conn.execute(f"DELETE FROM {table}")
    conn.execute("CREATE TEMP TABLE syms (s INTEGER PRIMARY KEY, symbol TEXT)")
    conn.executemany("INSERT INTO syms VALUES (?, ?)",
                     [(s, f"S{s:03d}.AX") for s in range(symbols)])
    conn.execute("CREATE TEMP TABLE days (d INTEGER PRIMARY KEY, session TEXT)")
    conn.executemany("INSERT INTO days VALUES (?, ?)", enumerate(weekdays(sessions + 5)))
    (m,) = conn.execute("SELECT count(*) FROM seed_p").fetchone()
    # One symbol's predictions after another, as a replay writes them; symbol s at session d
    # copies seed row (s * 389 + d) mod m, so neighbouring sessions copy neighbouring rows.
    conn.execute(
        f"INSERT INTO predictions (id, symbol, created_at, session, {COPIED})"
        f" SELECT s.s * {sessions} + d.d + 1, s.symbol, d.session || 'T06:30:00.000000+00:00',"
        f" d.session, {', '.join('p.' + c.strip() for c in COPIED.split(','))}"
        f" FROM syms s JOIN days d ON d.d < {sessions}"
        f" JOIN seed_p p ON p.k = (s.s * 389 + d.d) % {m}"
        f" WHERE s.s * {sessions} + d.d < {n} ORDER BY s.s, d.d")
    conn.execute(
        "INSERT INTO outcomes (prediction_id, horizon, base_session, end_session, base_close,"
        " end_close, forward_return, index_return, correct, evaluated_at)"
        f" SELECT s.s * {sessions} + d.d + 1, o.horizon, d.session, e.session, o.base_close,"
        " o.end_close, o.forward_return, o.index_return, o.correct, o.evaluated_at"
        f" FROM syms s JOIN days d ON d.d < {sessions}"
        f" JOIN seed_p p ON p.k = (s.s * 389 + d.d) % {m}"
        " JOIN seed_o o ON o.prediction_id = p.id"
        f" JOIN days e ON e.d = d.d + o.horizon AND e.d < {sessions}"
        f" WHERE s.s * {sessions} + d.d < {n} ORDER BY s.s, d.d, o.horizon")
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.execute("PRAGMA journal_mode = WAL")  # as the store keeps it
    conn.close()
    (root / "done").touch()
    return root, time.perf_counter() - t0


def run(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Seconds and peak RSS (MB: the command's and its reading child's, added) of one
    command, which must succeed."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peaks = Peaks(proc.pid)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode()
    proc.stderr.close()
    if proc.returncode:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {err}")
    return elapsed, sum(peaks.mb(usage.ru_maxrss))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="predictions in the store")
    ap.add_argument("--symbols", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3, help="runs of each command (median)")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/bench-report"),
                    help="where the generated stores are kept between runs")
    ap.add_argument("--json-only", action="store_true")
    args = ap.parse_args()

    root, built = build(args.cache, args.n, args.symbols)
    env = environment(root)
    with sqlite3.connect(root / "state" / "trading.db") as conn:
        (preds,), (outs,) = (conn.execute(f"SELECT count(*) FROM {t}").fetchone()
                             for t in ("predictions", "outcomes"))
    size = (root / "state" / "trading.db").stat().st_size
    for argv in COMMANDS.values():  # untimed: the page cache warm for every subject
        run([TRADING, *argv], env)
    times: dict[str, list[float]] = {k: [] for k in COMMANDS}
    rss: dict[str, float] = {k: 0.0 for k in COMMANDS}
    for _ in range(args.rounds):  # interleaved: a change in the machine's load hits all alike
        for name, argv in COMMANDS.items():
            s, mb = run([TRADING, *argv], env)
            times[name].append(s)
            rss[name] = max(rss[name], mb)
    result = {"predictions": preds, "outcomes": outs, "store_mb": round(size / 1e6),
              "built_s": round(built, 1), "rounds": args.rounds, "target_s": TARGET_S,
              "commands": {name: {"median_s": round(statistics.median(t), 3),
                                  "max_s": round(max(t), 3), "peak_rss_mb": round(rss[name]),
                                  "ok": statistics.median(t) < TARGET_S}
                           for name, t in times.items()}}
    if not args.json_only:
        print(f"trading report over {preds:,} predictions, {outs:,} outcomes "
              f"({result['store_mb']:,} MB store{f', built in {built:.0f} s' if built else ''});"
              f" {args.rounds} rounds, median; target < {TARGET_S:.0f} s")
        print(f"{'':30}{'median':>9}{'max':>9}{'peak RSS':>10}")
        for name, r in result["commands"].items():
            print(f"{name:30}{r['median_s']:>8.2f}s{r['max_s']:>8.2f}s{r['peak_rss_mb']:>7} MB"
                  f" {'ok' if r['ok'] else 'MISSED'}")
    print(json.dumps(result))
    return 0 if all(r["ok"] for r in result["commands"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
