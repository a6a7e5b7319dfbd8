"""Benchmark of the training service: peak memory of a training run (for the unit's
``MemoryMax=``) and timings.

The real handler runs as its own process (``python -m trading.handlers.training --socket``,
the same code systemd starts), with private state and runtime directories; the benchmark calls
it over its socket like the CLI does and reads the process's peak resident memory (``VmHWM``
in /proc/PID/status) after each step. Steps: cold start to the first answer, ``train`` on the
seven default symbols, ``backtest`` over the same bars, and the prediction-side cost of a model
(import, ``load_active``, one ``probability``) measured in a fresh interpreter.

    .venv/bin/python bench/bench_training.py [--source csv:DIR|sample] [--repeat N] [--all]
                                             [--max-rows N] [--no-backtest]

Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = f"csv:{REPO / 'tests' / 'data' / 'asx-daily'}"


def status_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def prediction_side(env: dict[str, str]) -> dict[str, float]:
    """What the prediction service pays to use the active model, in a fresh interpreter."""
    code = r"""
import json, sys, time
t = time.perf_counter()
from trading.learning import models
from trading import config
imp = time.perf_counter() - t
cfg = config.get()
t = time.perf_counter(); m = models.load_active(cfg); load = time.perf_counter() - t
data = {"technical": {"current_price": 100.0, "rsi": 55.0, "macd_histogram": 0.2,
        "price_vs_sma20": 1.0, "tech_score": 0.6}, "volume": {"volume_trend": 0.1,
        "price_volume_correlation": 0.2, "volume_quality_score": 0.55},
        "market_context": {"trend_pct": 0.3}}
t = time.perf_counter()
for _ in range(1000):
    m.probability(data)
prob = (time.perf_counter() - t) / 1000
print(json.dumps({"import_ms": imp * 1e3, "load_active_ms": load * 1e3,
                  "probability_us": prob * 1e6, "numpy_imported": "numpy" in sys.modules,
                  "sklearn_imported": "sklearn" in sys.modules}))
"""
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", default=DEFAULT_SOURCE)
    ap.add_argument("--repeat", type=int, default=1, help="train runs (peak is the max)")
    ap.add_argument("--all", action="store_true",
                    help="train on every symbol of the csv:DIR folder, not the configured seven")
    ap.add_argument("--max-rows", type=int, default=None,
                    help="training.max_rows for the handler (default: the shipped one)")
    ap.add_argument("--no-backtest", action="store_true", help="train only")
    args = ap.parse_args(argv)
    symbols = {}
    if args.all:
        folder = Path(args.source.removeprefix("csv:"))
        symbols = {"symbols": sorted(p.name[:-4] for p in folder.glob("*.csv")
                                     if not p.name.startswith("^"))}

    root = Path(tempfile.mkdtemp(prefix="bench-training-"))
    runtime = Path(tempfile.mkdtemp(prefix="bt-", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADING_", "LISTEN_"))}
    env.update(TRADING_STATE_DIR=str(root / "state"), TRADING_CACHE_DIR=str(root / "cache"),
               TRADING_RUNTIME_DIR=str(runtime), TRADING_CONFIG=str(root / "none.toml"),
               TRADING_IN_PROCESS="never", TRADING_LOG_LEVEL="WARNING")
    if args.max_rows is not None:
        env["TRADING_TRAINING_MAX_ROWS"] = str(args.max_rows)
    os.environ.update({k: v for k, v in env.items() if k.startswith("TRADING_")})
    sock = runtime / "training.sock"
    # training takes its bars from market-data over its socket, as installed
    peer = subprocess.Popen([sys.executable, "-m", "trading.handlers.market_data", "--socket",
                             str(runtime / "market-data.sock"), "--idle-exit", "600"], env=env)

    from trading import config
    from trading.runtime.client import Client

    config.reset()
    cfg = config.get()
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "trading.handlers.training", "--socket",
                             str(sock), "--idle-exit", "600"], env=env)
    figures: dict[str, float] = {}
    try:
        while not (sock.exists() and (runtime / "market-data.sock").exists()):
            if proc.poll() is not None:
                raise SystemExit("the handler exited before listening")
            time.sleep(0.005)
        client = Client(cfg, in_process="never", timeout=3600)
        client.call("training", "health_check")
        figures["cold_start_to_first_answer_ms"] = (time.perf_counter() - t0) * 1e3
        figures["rss_idle_mb"] = status_kb(proc.pid, "VmRSS") / 1024
        figures["peak_idle_mb"] = status_kb(proc.pid, "VmHWM") / 1024

        train_s = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            result = client.call("training", "train", {"source": args.source, **symbols})
            train_s.append(time.perf_counter() - t)
        figures["train_s"] = min(train_s)
        figures["peak_after_train_mb"] = status_kb(proc.pid, "VmHWM") / 1024
        figures["rss_after_train_mb"] = status_kb(proc.pid, "VmRSS") / 1024
        figures["rows_trained"] = result["metrics"]["rows"]
        budget = result["metrics"].get("row_budget")
        figures["symbol_sessions_left_out"] = budget["left_out"] if budget else 0
        oos = result["metrics"]["out_of_sample"]
        verdict = result["metrics"].get("verdict", {})
        # measured with the model in use, whether or not it earns activation
        client.call("training", "activate", {"version": result["version"], "force": True})

        bt = {"hit_rate": None, "calls": 0}
        if not args.no_backtest:
            t = time.perf_counter()
            bt = client.call("training", "backtest", {"source": args.source, **symbols})
            figures["backtest_s"] = time.perf_counter() - t
            figures["peak_after_backtest_mb"] = status_kb(proc.pid, "VmHWM") / 1024
        client.close()
        pred = prediction_side(env)
    finally:
        for p in (proc, peer):
            p.terminate()
            p.wait(10)

    rows = [(k, f"{v:.1f}") for k, v in figures.items()]
    rows += [(f"prediction side: {k}", f"{v:.3f}" if isinstance(v, float) else str(v))
             for k, v in pred.items()]
    rows += [(f"out of sample {name}: accuracy / AUC / Brier",
              f"{s['accuracy']} / {s['auc']} / {s['brier']} (n={s['n']})")
             for name, s in oos.items()]
    rows.append(("backtest hit rate (calls)", f"{bt['hit_rate']} ({bt['calls']})"))
    rows.append(("activate's verdict", str(verdict.get("why"))))
    width = max(len(r[0]) for r in rows)
    print(f"training benchmark, source {args.source}, symbols {', '.join(result['symbols'])}")
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")
    peak = max(figures["peak_after_train_mb"], figures.get("peak_after_backtest_mb", 0))
    print(f"  suggested MemoryMax= (peak x1.5, rounded up to 32M): "
          f"{int(-(-peak * 1.5 // 32) * 32)}M")
    print(json.dumps({"source": args.source, "symbols": result["symbols"], **figures,
                      "prediction_side": pred, "out_of_sample": oos,
                      "backtest_hit_rate": bt["hit_rate"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
