#!/usr/bin/env python3
"""Replay benchmark: predictions a second and peak memory of ``trading replay`` as a user
runs it, over a folder of daily CSVs (issue 26).

    .venv/bin/python bench/bench_replay.py --dir FOLDER          # a real folder, every file
    .venv/bin/python bench/bench_replay.py --synthetic 2 20 200  # generated folders

Each run is a fresh ``trading replay FOLDER -u CODES --json`` process (the console script of
this venv) with its own empty state directory, so the bar cache, the ledger and the
calibration all start cold, as on a first replay. The figure is the whole command: reading
the files, the summaries, the predictor, the ledger, the outcomes and the walk-forward
calibration. Peak memory is the sum of the command's own high-water mark and its reader
process's (the replay forks one to read and predict while it writes): an upper bound on what
both held at once.

``--synthetic N ...`` writes N series in Yahoo's classic download layout (newest row first,
with ``Adj Close``), ``--years`` long on the ASX calendar, plus the index, into a temporary
folder: random walks seeded by name, so every run writes the same files.

Targets: at least **2,000 predictions a second** over the twenty real histories, and a peak
of at most **300 MB whether 2 symbols or 200**. Prints a table and a JSON line; exits 1 when
a target is missed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from peaks import Peaks  # bench/peaks.py

PYTHON = sys.executable
TRADING = str(Path(PYTHON).with_name("trading"))
RATE_TARGET, RSS_TARGET_MB = 2000.0, 300.0
INDEX = "^AXJO"


def write_synthetic(folder: Path, n: int, years: int) -> list[str]:
    """``n`` series and the index over the last ``years`` of the ASX calendar to 2016-11-22."""
    import numpy as np

    from trading.market import asx

    end = dt.date(2016, 11, 22)
    days = [d.isoformat() for d in asx.sessions_between(end - dt.timedelta(days=365 * years),
                                                        end)]
    codes = [f"S{i:03d}.AX" for i in range(n)]
    for code in codes + [INDEX]:
        rng = np.random.default_rng(sum(code.encode()) * 7919 + len(code))
        close = 20.0 * np.exp(np.cumsum(rng.normal(0.0002, 0.015, len(days))))
        adj = close * np.linspace(0.8, 1.0, len(days))  # dividends, as the classic file has
        spread = close * rng.uniform(0.002, 0.02, len(days))
        volume = np.zeros(len(days)) if code == INDEX else rng.integers(1e4, 1e6, len(days))
        lines = ["Date,Open,High,Low,Close,Volume,Adj Close"]
        for i in range(len(days) - 1, -1, -1):  # newest first, as Yahoo saved it
            c = close[i]
            lines.append(f"{days[i]},{c:.4f},{c + spread[i]:.4f},{c - spread[i]:.4f},"
                         f"{c:.4f},{int(volume[i])},{adj[i]:.6f}")
        (folder / f"{code}.csv").write_text("\n".join(lines) + "\n")
    return codes


def replay(folder: Path, codes: list[str]) -> dict:
    """One cold ``trading replay`` of ``codes``: seconds, predictions, peak RSS."""
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as home:
        env = {**os.environ, "TRADING_STATE_DIR": f"{home}/state",
               "TRADING_CACHE_DIR": f"{home}/cache", "TRADING_RUNTIME_DIR": f"{home}/run",
               "TRADING_CONFIG": f"{home}/none.toml",
               "TRADING_NOW": "2017-01-03T12:00:00+11:00"}
        universe = Path(home) / "codes.txt"
        universe.write_text("\n".join(codes) + "\n")
        out = Path(home) / "out.json"
        with out.open("w") as sink:
            start = time.perf_counter()
            proc = subprocess.Popen([TRADING, "replay", str(folder), "-u", str(universe),
                                     "--json"], stdout=sink, stderr=subprocess.PIPE, env=env)
            peaks = Peaks(proc.pid)
            _, status, usage = os.wait4(proc.pid, 0)
            seconds = time.perf_counter() - start
        err = proc.stderr.read().decode(errors="replace")
        proc.stderr.close()
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"replay failed: {err.strip()}")
        body = json.loads(out.read_text())
    command, reader = peaks.mb(usage.ru_maxrss)
    return {"symbols": len(codes), "predictions": body["predictions"],
            "outcomes": body["outcomes"]["evaluated"], "seconds": round(seconds, 2),
            "per_second": round(body["predictions"] / seconds, 1),
            "peak_rss_mb": round(command + reader, 1), "command_mb": round(command, 1),
            "reader_mb": round(reader, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", type=Path, help="a folder of SYMBOL.csv files (all replayed)")
    ap.add_argument("--synthetic", type=int, nargs="*", default=[],
                    help="replay generated folders of these many symbols")
    ap.add_argument("--years", type=int, default=2, help="length of a generated series")
    args = ap.parse_args()
    if not args.dir and not args.synthetic:
        ap.error("give --dir FOLDER or --synthetic N [N ...]")
    rows = []
    if args.dir:
        codes = sorted(p.stem for p in args.dir.glob("*.csv") if not p.stem.startswith("^"))
        rows.append({"case": f"{args.dir.name}: {len(codes)} files", **replay(args.dir, codes)})
    for n in args.synthetic:
        with tempfile.TemporaryDirectory(prefix="bench-series-") as folder:
            codes = write_synthetic(Path(folder), n, args.years)
            rows.append({"case": f"synthetic: {n} x {args.years} years",
                         **replay(Path(folder), codes)})
    print(f"{'case':<34}{'predictions':>12}{'seconds':>9}{'per s':>9}{'peak MB':>9}"
          f"{'(command + reader)':>20}")
    for r in rows:
        print(f"{r['case']:<34}{r['predictions']:>12}{r['seconds']:>9}{r['per_second']:>9}"
              f"{r['peak_rss_mb']:>9}{r['command_mb']:>11} + {r['reader_mb']:<6}")
    ok = all(r["peak_rss_mb"] <= RSS_TARGET_MB for r in rows)
    if args.dir:
        ok = ok and rows[0]["per_second"] >= RATE_TARGET
    print(json.dumps({"runs": rows, "targets": {"per_second>=": RATE_TARGET,
                                                "peak_rss_mb<=": RSS_TARGET_MB}, "ok": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
