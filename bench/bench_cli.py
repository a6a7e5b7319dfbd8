#!/usr/bin/env python3
"""CLI benchmark: how long the everyday ``trading`` commands take to answer, next to
``python -c pass`` measured in the same run (issue 19).

    .venv/bin/python bench/bench_cli.py [--rounds 9] [--json-only]

Each command is a fresh ``trading`` process (the installed console script of this venv), the
way a person or a timer runs it. ``history`` and ``call`` ask a warm prediction service
through its socket (``systemd-socket-activate`` holds the socket, as systemd does; the store
holds the sample predictions); ``status`` asks systemd (where none runs it says so, which is
what it costs here). The subjects run interleaved, one of each per round, so a change in the
machine's load hits them alike. Target: each median within 0.25 s and 10x ``python -c pass``.
Prints a table and a JSON line; exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PYTHON = sys.executable
TRADING = str(Path(PYTHON).with_name("trading"))
LIMIT_S, LIMIT_RATIO = 0.25, 10.0

COMMANDS = {
    "trading --help": ["--help"],
    "trading status": ["status"],
    "trading history": ["history"],
    "trading call": ["call", "prediction", "health_check"],
}


def run(argv: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - t0
    if done.returncode not in (0,):
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.decode()}")
    return elapsed


def warm_prediction_service(tmp: Path, env: dict[str, str]) -> subprocess.Popen:
    """The prediction handler on its socket, started and warmed by one call."""
    sock = Path(env["TRADING_RUNTIME_DIR"]) / "prediction.sock"
    sock.parent.mkdir(parents=True, exist_ok=True)
    keep = [f"-E{k}={v}" for k, v in env.items() if k.startswith(("TRADING_", "HOME", "XDG_"))]
    proc = subprocess.Popen(["systemd-socket-activate", "-l", str(sock), *keep,
                             PYTHON, "-m", "trading.handlers.prediction"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not sock.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{sock} never appeared")
        time.sleep(0.01)
    time.sleep(0.05)
    run([TRADING, "call", "prediction", "health_check"], env)  # starts it: warm from now on
    return proc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=9, help="runs of each subject (median)")
    ap.add_argument("--json-only", action="store_true")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-cli-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADING_")}
    env.update(TRADING_STATE_DIR=str(tmp / "state"), TRADING_CACHE_DIR=str(tmp / "cache"),
               TRADING_RUNTIME_DIR=str(tmp / "run"), TRADING_CONFIG=str(tmp / "none.toml"),
               TRADING_IDLE_EXIT="600", TRADING_SOURCE="sample", TRADING_NEWS_SOURCE="sample")
    # Predictions to list: the sample cycle, in-process, before any socket exists.
    subprocess.run([TRADING, "--in-process", "predict"], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    service = warm_prediction_service(tmp, env)
    try:
        times: dict[str, list[float]] = {"python -c pass": [], **{k: [] for k in COMMANDS}}
        for name, argv in COMMANDS.items():  # one untimed run each: the page cache warm
            run([TRADING, *argv], env)
        for _ in range(args.rounds):
            times["python -c pass"].append(run([PYTHON, "-c", "pass"], env))
            for name, argv in COMMANDS.items():
                times[name].append(run([TRADING, *argv], env))
    finally:
        service.terminate()
        service.wait()
    ref = statistics.median(times["python -c pass"])
    result = {"rounds": args.rounds, "python_c_pass_s": ref, "commands": {}}
    for name in COMMANDS:
        med = statistics.median(times[name])
        result["commands"][name] = {"median_s": med, "max_s": max(times[name]),
                                    "ratio": med / ref,
                                    "ok": med <= LIMIT_S and med / ref <= LIMIT_RATIO}
    if not args.json_only:
        print(f"CLI benchmark, {args.rounds} interleaved rounds (median; target <= "
              f"{LIMIT_S} s and <= {LIMIT_RATIO:.0f}x python -c pass)")
        print(f"{'':24}{'median':>10}{'max':>10}{'ratio':>8}")
        print(f"{'python -c pass':24}{ref * 1000:>8.1f}ms{max(times['python -c pass']) * 1000:>8.1f}ms")
        for name, r in result["commands"].items():
            print(f"{name:24}{r['median_s'] * 1000:>8.1f}ms{r['max_s'] * 1000:>8.1f}ms"
                  f"{r['ratio']:>7.1f}x {'ok' if r['ok'] else 'MISSED'}")
    print(json.dumps(result))
    return 0 if all(r["ok"] for r in result["commands"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
