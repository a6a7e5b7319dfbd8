#!/usr/bin/env python3
"""Soak benchmark: N clients for M minutes against the installed stack, through systemd.

    .venv/bin/python bench/bench_soak.py [--clients 8] [--minutes 2] [--idle-exit SECONDS]
                                         [--runtime-dir DIR] [--json-only]

Without ``--runtime-dir`` it installs the checkout into a private systemd user manager (the
sandbox of tests/sandbox.py: ``install.sh --user`` in a scratch HOME) and soaks that; with
``--runtime-dir`` it uses the sockets of a running install (``/run/trading`` for a system one).
``--idle-exit`` shortens the handlers' idle exit by drop-in (sandbox only), so the soak also
crosses activations; the shipped default is 30 s.

Each client is a closed loop of one call per connection (what the CLI does), with a short
random think time and now and then a pause of a few seconds, over the calls a user makes:
market data for one symbol and for seven, sentiment for one symbol, the latest prediction,
prediction history, a new prediction for three symbols, and health checks. Everything uses
the offline ``sample`` sources, so the soak needs no network.

Printed: requests served and errors (per service and in all), p50/p99 latency, activations
(distinct handler processes seen), and the peak resident memory of any one handler process
(VmHWM). A table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from support.wire import rpc  # noqa: E402  (the tests' one client, by path)
SYMBOLS = ["CBA", "ANZ", "NAB", "WBC", "MQG", "COL", "BHP"]

# (weight, service, method, params)
MIX = [
    (35, "market-data", "get_market_data", lambda r: {"symbol": r.choice(SYMBOLS),
                                                      "source": "sample"}),
    (10, "market-data", "bulk_fetch", lambda r: {"symbols": SYMBOLS, "source": "sample"}),
    (20, "sentiment", "analyze_sentiment", lambda r: {"symbol": r.choice(SYMBOLS),
                                                      "source": "sample"}),
    (10, "prediction", "get_prediction", lambda r: {"symbol": r.choice(SYMBOLS)}),
    (8, "prediction", "history", lambda r: {"limit": 20}),
    (5, "prediction", "generate_predictions", lambda r: {"symbols": r.sample(SYMBOLS, 3),
                                                         "source": "sample"}),
    (12, "market-data", "health_check", lambda r: None),
]


class Monitor(threading.Thread):
    """Polls /proc for handler processes: distinct PIDs per service and their peak RSS."""

    def __init__(self, venv_prefix: str | None, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        from trading.handlers import SERVICES

        self.modules = {m: s for s, m in SERVICES.items()}
        self.prefix = venv_prefix
        self.interval = interval
        self.pids: dict[str, set[int]] = defaultdict(set)
        self.peak_rss: dict[str, int] = defaultdict(int)
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                try:
                    argv = [a.decode(errors="replace") for a in
                            (entry / "cmdline").read_bytes().split(b"\0") if a]
                except OSError:
                    continue
                if len(argv) < 3 or argv[1] != "-m" or argv[2] not in self.modules:
                    continue
                if self.prefix and not argv[0].startswith(self.prefix):
                    continue
                service = self.modules[argv[2]]
                self.pids[service].add(int(entry.name))
                try:
                    for line in (entry / "status").read_text().splitlines():
                        if line.startswith("VmHWM:"):
                            kib = int(line.split()[1])
                            self.peak_rss[service] = max(self.peak_rss[service], kib * 1024)
                except (OSError, ValueError):
                    pass
            self.stop.wait(self.interval)


def soak(runtime_dir: Path, clients: int, seconds: float, seed: int = 8) -> dict:
    lat: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, Counter] = defaultdict(Counter)
    lock = threading.Lock()
    weights = [w for w, *_ in MIX]
    deadline = time.monotonic() + seconds

    def client(k: int) -> None:
        r = random.Random(seed * 1000 + k)
        while time.monotonic() < deadline:
            _, service, method, params = r.choices(MIX, weights)[0]
            began = time.monotonic()
            try:
                answer = rpc(runtime_dir / f"{service}.sock", method, params(r), timeout=60)
                problem = answer["error"]["message"][:80] if "error" in answer else None
            except Exception as exc:  # noqa: BLE001 - counted, the soak goes on
                problem = f"{type(exc).__name__}: {exc}"[:80]
            took = time.monotonic() - began
            with lock:
                if problem is None:
                    lat[service].append(took)
                else:
                    errors[service][problem] += 1
            # Think time; now and then a pause long enough for an idle exit.
            time.sleep(r.uniform(3, 6) if r.random() < 0.02 else r.uniform(0, 0.1))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"latencies": lat, "errors": errors}


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(len(v) * p))] * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--minutes", type=float, default=2.0)
    ap.add_argument("--idle-exit", type=float, default=None)
    ap.add_argument("--runtime-dir", type=Path, default=None)
    ap.add_argument("--json-only", action="store_true")
    args = ap.parse_args()

    manager = None
    if args.runtime_dir is None:
        sys.path.insert(0, str(REPO / "tests"))
        from sandbox import UserManager, install

        manager = UserManager().start()
        install(manager)
        if args.idle_exit is not None:
            manager.set_idle_exit(args.idle_exit)
        runtime_dir = manager.runtime_dir / "trading"
        prefix = str(manager.venv)
    else:
        runtime_dir, prefix = args.runtime_dir, None
    try:
        # One prediction per symbol first, so get_prediction has something to find (a
        # "no prediction yet" would be an honest answer, but not the load we mean to measure).
        seeded = rpc(runtime_dir / "prediction.sock", "generate_predictions",
                     {"symbols": SYMBOLS, "source": "sample"}, timeout=60)
        if "error" in seeded or len(seeded["result"]["results"]) != len(SYMBOLS):
            raise SystemExit(f"seeding predictions failed: {seeded}")
        monitor = Monitor(prefix)
        monitor.start()
        began = time.monotonic()
        out = soak(runtime_dir, args.clients, args.minutes * 60)
        elapsed = time.monotonic() - began
        monitor.stop.set()
        monitor.join()
        restarts = {}
        if manager is not None:
            for s in ("market-data", "sentiment", "prediction"):
                restarts[s] = int(manager.show(f"trading-{s}.service", "NRestarts")["NRestarts"])
    finally:
        if manager is not None:
            manager.cleanup()

    lat, errs = out["latencies"], out["errors"]
    services = sorted(set(lat) | set(errs))
    rows = {}
    for s in services:
        rows[s] = {"served": len(lat[s]), "errors": sum(errs[s].values()),
                   "p50_ms": pct(lat[s], 0.50), "p99_ms": pct(lat[s], 0.99),
                   "activations": len(monitor.pids.get(s, ())),
                   "peak_rss_mib": round(monitor.peak_rss.get(s, 0) / 2**20, 1),
                   "error_kinds": dict(errs[s].most_common(5))}
    everything = [x for s in services for x in lat[s]]
    total = {"clients": args.clients, "seconds": round(elapsed, 1),
             "idle_exit_s": args.idle_exit if args.idle_exit is not None else 30,
             "served": len(everything), "errors": sum(r["errors"] for r in rows.values()),
             "requests_per_s": round(len(everything) / elapsed, 1),
             "p50_ms": pct(everything, 0.50), "p99_ms": pct(everything, 0.99),
             "activations": sum(r["activations"] for r in rows.values()),
             "peak_rss_mib": max((r["peak_rss_mib"] for r in rows.values()), default=0),
             "crash_restarts": restarts}
    if not args.json_only:
        print(f"soak: {args.clients} clients x {elapsed / 60:.1f} min against "
              f"{'a sandboxed install.sh --user' if manager else runtime_dir}, idle exit "
              f"{total['idle_exit_s']:g}s")
        print(f"{'service':<12} {'served':>8} {'errors':>7} {'p50 ms':>8} {'p99 ms':>8} "
              f"{'activations':>12} {'peak RSS MiB':>13}")
        for s, r in rows.items():
            print(f"{s:<12} {r['served']:>8} {r['errors']:>7} {r['p50_ms'] or 0:>8.1f} "
                  f"{r['p99_ms'] or 0:>8.1f} {r['activations']:>12} {r['peak_rss_mib']:>13.1f}")
        print(f"{'all':<12} {total['served']:>8} {total['errors']:>7} {total['p50_ms'] or 0:>8.1f} "
              f"{total['p99_ms'] or 0:>8.1f} {total['activations']:>12} "
              f"{total['peak_rss_mib']:>13.1f}")
        print(f"{total['requests_per_s']} requests/s; restarts after a crash: {restarts}")
        for s, r in rows.items():
            if r["error_kinds"]:
                print(f"  {s} errors: {r['error_kinds']}")
    print(json.dumps({"total": total, "services": rows}))
    return 0 if total["errors"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
