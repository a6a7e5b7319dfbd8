"""Benchmark the prediction cycle: cold services, warm services, 7 and 200 symbols.

    .venv/bin/python bench/bench_prediction.py [--runs N] [--json-only]

Each of the three services (prediction, market-data, sentiment) runs under
``systemd-socket-activate``, which holds the listening socket and execs the handler only when
the first connection arrives, as a systemd socket unit does. The prediction handler reaches
its peers through their sockets (``TRADING_IN_PROCESS=never``), so a cold cycle pays three
interpreter starts in a chain: prediction, then market-data, then sentiment.

Measured, all with the offline ``sample`` source (no network), in a private state directory:

- **cold, 7 symbols**: three fresh processes, the data cache (bars and headlines in SQLite)
  already warm from an earlier run; one ``generate_predictions`` from connect to answer.
  Target <= 1 s.
- **trading predict, cold**: the whole command a trader or the timer runs, ``trading predict
  --source sample`` as a new process, its call starting the three handlers in a chain; data
  cache warm. Target <= 1 s (issue 19).
- **warm, 7 symbols**: the same call again with the services running. Target <= 50 ms.
- **warm, 200 symbols**: 200 synthetic symbols, services running, cache warm. Target <= 1 s.
- **in-process CLI**: ``trading predict --source sample`` with no sockets (the cron fallback),
  whole command, for reference.

Prints a table, then one JSON line with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
SERVICES = {"prediction": "trading.handlers.prediction",
            "market-data": "trading.handlers.market_data",
            "sentiment": "trading.handlers.sentiment"}
TARGETS = {"cold_7": 1.0, "cli_cold_7": 1.0, "warm_7": 0.050, "warm_200": 1.0}


def environment(root: Path) -> dict[str, str]:
    runtime = Path(tempfile.mkdtemp(prefix="bp-", dir="/tmp"))  # short: sun_path is 108 bytes
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADING_", "LISTEN_"))}
    env.update(TRADING_RUNTIME_DIR=str(runtime), TRADING_STATE_DIR=str(root / "state"),
               TRADING_CACHE_DIR=str(root / "cache"), TRADING_CONFIG=str(root / "none.toml"),
               TRADING_IN_PROCESS="never", TRADING_IDLE_EXIT="300", TRADING_LOG_LEVEL="WARNING")
    return env


class Services:
    """The three handlers, each behind its own systemd-socket-activate (lazy exec)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.runtime = Path(env["TRADING_RUNTIME_DIR"])
        self.procs: list[subprocess.Popen] = []

    def start(self) -> None:
        passed = [f"-E{k}={v}" for k, v in self.env.items()
                  if k.startswith(("TRADING_", "PYTHON", "HOME", "PATH", "TZ", "LANG"))]
        for name, module in SERVICES.items():
            path = self.runtime / f"{name}.sock"
            path.unlink(missing_ok=True)
            script = Path(PYTHON).with_name(f"trading-{name}")  # what the unit runs
            argv = [str(script)] if script.exists() else [PYTHON, "-m", module]
            self.procs.append(subprocess.Popen(
                ["systemd-socket-activate", "-l", str(path), *passed, *argv],
                env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 10
        while not all((self.runtime / f"{n}.sock").exists() for n in SERVICES):
            if time.monotonic() > deadline:
                raise SystemExit("systemd-socket-activate did not create the sockets")
            time.sleep(0.01)

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs.clear()


def new_client(env: dict[str, str]):
    os.environ.update({k: v for k, v in env.items() if k.startswith("TRADING_")})
    from trading import config
    from trading.runtime.client import Client

    config.reset()
    return Client(config.get(), in_process="never", timeout=120)


def cycle(client, symbols=None) -> tuple[float, dict]:
    params = {"source": "sample", **({"symbols": symbols} if symbols else {})}
    t0 = time.perf_counter()
    out = client.call("prediction", "generate_predictions", params)
    elapsed = time.perf_counter() - t0
    if out["errors"] or not out["results"]:
        raise SystemExit(f"cycle failed: {out['errors']}")
    return elapsed, out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="repetitions per figure")
    parser.add_argument("--json-only", action="store_true")
    args = parser.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="bench-prediction-"))
    env = environment(root)
    services = Services(env)
    many = [f"Z{i:03d}" for i in range(200)]
    figures: dict[str, object] = {}
    try:
        # Fill the data cache (bars, headlines) for both symbol sets, then stop everything.
        services.start()
        client = new_client(env)
        figures["first_run_s"] = round(cycle(client)[0], 4)
        cycle(client, many)
        client.close()
        services.stop()

        cold = []
        for _ in range(args.runs):
            services.start()
            client = new_client(env)
            cold.append(cycle(client)[0])
            client.close()
            services.stop()

        # The whole command a trader (or the timer) runs: a new `trading` process, whose call
        # starts the three handlers in a chain (issue 19's "cold predict cycle").
        cli_cold = []
        for _ in range(args.runs):
            services.start()
            t0 = time.perf_counter()
            subprocess.run([PYTHON, "-m", "trading.cli.main", "predict", "--source", "sample"],
                           env=env, check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            cli_cold.append(time.perf_counter() - t0)
            services.stop()

        services.start()
        client = new_client(env)
        cycle(client)  # start the processes
        warm = [cycle(client)[0] for _ in range(args.runs * 4)]
        cycle(client, many)
        warm200, out = [], None
        for _ in range(args.runs):
            t, out = cycle(client, many)
            warm200.append(t)
        assert out is not None and len(out["results"]) == 200
        client.close()
        services.stop()

        cli_env = dict(env, TRADING_IN_PROCESS="auto")
        shutil.rmtree(env["TRADING_RUNTIME_DIR"], ignore_errors=True)  # no sockets: fallback
        cli = []
        for _ in range(max(1, args.runs // 2)):
            t0 = time.perf_counter()
            subprocess.run([PYTHON, "-m", "trading.cli.main", "predict", "--source", "sample",
                            "--json"], env=cli_env, check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            cli.append(time.perf_counter() - t0)
    finally:
        services.stop()
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(env["TRADING_RUNTIME_DIR"], ignore_errors=True)

    def summary(xs: list[float]) -> dict[str, float]:
        xs = sorted(xs)
        return {"median_s": round(statistics.median(xs), 4), "max_s": round(xs[-1], 4),
                "min_s": round(xs[0], 4), "runs": len(xs)}

    figures.update(cold_7=summary(cold), cli_cold_7=summary(cli_cold), warm_7=summary(warm),
                   warm_200=summary(warm200), cli_in_process_7=summary(cli))
    if not args.json_only:
        print(f"{'case':<22}{'median':>10}{'max':>10}{'target':>10}  ok")
        for key, label in (("cold_7", "cold, 7 symbols"),
                           ("cli_cold_7", "trading predict, cold"),
                           ("warm_7", "warm, 7 symbols"),
                           ("warm_200", "warm, 200 symbols"),
                           ("cli_in_process_7", "CLI in-process, 7")):
            f = figures[key]
            target = TARGETS.get(key)
            ok = "" if target is None else ("yes" if f["median_s"] <= target else "NO")
            print(f"{label:<22}{f['median_s'] * 1000:>8.1f}ms{f['max_s'] * 1000:>8.1f}ms"
                  f"{'' if target is None else f'{target * 1000:>8.0f}ms':>10}  {ok}")
    print(json.dumps({"bench": "prediction", "python": sys.version.split()[0],
                      "targets_s": TARGETS, **figures}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
