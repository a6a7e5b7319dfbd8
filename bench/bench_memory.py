#!/usr/bin/env python3
"""Memory of the whole stack: on demand under a real systemd, next to always-on processes.

    sudo .venv/bin/python bench/bench_memory.py [--idle-exit 3] [--concurrent N] [--json-only]

Runs ``install.sh --user`` into a private systemd user manager (tests/sandbox.py; needs root
for the mount namespace) and, for each service, makes the same representative calls on sample
data (no network) through its systemd-owned socket:

- **peak while serving**: the handler's VmHWM (peak RSS, /proc/PID/status) after the calls,
  and the cgroup's MemoryCurrent that systemd accounts (what MemoryMax= caps);
- **after idle exit**: the service inactive, no handler process, 0 bytes - checked, not assumed;

and, in the same run, the **always-on alternative**: each service as a resident Python process
(the same handler started with an idle exit of a day, so it never leaves) after the same calls,
its resident memory (VmRSS) measured once it is idle again - what it would cost around the
clock. Prints a table and one JSON line. The MemoryMax=/CPUQuota= in units/ come from these
peaks plus headroom.

``--concurrent N`` makes each service's calls from N clients at once (N connections, each its
own thread), to check the caps against the most a service takes in at once: 16 workers and 2
kept in reserve for a newcomer, so 18 (issue 27). A call a service refuses (a job cap) is
counted, not fatal.
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
sys.path.insert(0, str(REPO / "tests"))

SYMBOLS = ["CBA.AX", "ANZ.AX", "NAB.AX", "WBC.AX", "MQG.AX", "COL.AX", "BHP.AX"]
# What each service does in normal use, on sample data: these calls load its heavy imports.
WORKLOAD: dict[str, list[tuple[str, dict]]] = {
    "market-data": [("bulk_fetch", {"symbols": SYMBOLS}), ("get_market_context", {})],
    "sentiment": [("analyze_bulk", {"symbols": SYMBOLS})],
    "prediction": [("generate_predictions", {"symbols": SYMBOLS})],
    "training": [("train", {"symbols": SYMBOLS[:3], "folds": 3})],
}
SAMPLE_ENV = {"TRADING_SOURCE": "sample", "TRADING_NEWS_SOURCE": "sample"}


def call(path: Path, method: str, params: dict | None = None, timeout: float = 300):
    """The result of one call on a connection of its own; a service error is an exception."""
    from support.wire import rpc

    answer = rpc(path, method, params or None, timeout=timeout)
    if "error" in answer:
        raise RuntimeError(f"{method}: {answer['error']}")
    return answer["result"]


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in bytes."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
    return out


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError(f"waited {timeout}s for {what}")


def _client(path: Path, calls: list[tuple[str, dict]], go) -> list[str]:
    """One client process's calls, once every client is ready; what was refused."""
    go.wait()
    refused = []
    for method, params in calls:
        try:
            call(path, method, params)
        except (RuntimeError, OSError) as exc:
            refused.append(str(exc)[:300])
    return refused


def run_calls(path: Path, calls: list[tuple[str, dict]], concurrent: int) -> list[str]:
    """The calls, from ``concurrent`` client processes at once (the services cap connections
    per process, so one process's threads would only meet that cap); what was refused."""
    if concurrent <= 1:
        for method, params in calls:
            call(path, method, params)
        return []
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    go = ctx.Manager().Event()
    with ctx.Pool(concurrent) as pool:
        pending = [pool.apply_async(_client, (path, calls, go)) for _ in range(concurrent)]
        time.sleep(1.0)  # every client started and waiting
        go.set()
        return [r for p in pending for r in p.get()]


def on_demand(idle_exit: float, concurrent: int = 1) -> dict[str, dict]:
    from sandbox import UserManager, install

    results: dict[str, dict] = {}
    with UserManager() as sd:
        install(sd)
        sd.set_idle_exit(idle_exit)
        for name in WORKLOAD:  # sample data, no network: a bench-only drop-in
            sd.drop_in(f"trading-{name}.service", "bench-sample",
                       "[Service]\n" + "".join(f"Environment={k}={v}\n"
                                               for k, v in SAMPLE_ENV.items()))
        for name, calls in WORKLOAD.items():
            path = sd.runtime_dir / "trading" / f"{name}.sock"
            before = sd.handler_pids(name)
            t0 = time.monotonic()
            refused = run_calls(path, calls, concurrent)
            if refused:
                print(f"{name}: {len(refused)} refused, e.g. {refused[0]}", file=sys.stderr)
            elapsed = time.monotonic() - t0
            pid = sd.main_pid(name)
            st = proc_status(pid)
            cg = sd.show(f"trading-{name}.service", "MemoryCurrent")["MemoryCurrent"]
            wait_for(lambda: sd.show(f"trading-{name}.service", "ActiveState")["ActiveState"]
                     == "inactive", idle_exit + 60, f"{name} to exit when idle")
            after = sd.show(f"trading-{name}.service", "MainPID", "MemoryCurrent", "Result")
            left = sd.handler_pids(name)
            results[name] = {
                "processes_before_first_call": len(before),
                "calls_s": round(elapsed, 3),
                "concurrent": concurrent,
                "refused": len(refused),
                "peak_rss_bytes": st["VmHWM"],
                "rss_after_calls_bytes": st["VmRSS"],
                "cgroup_memory_bytes": int(cg) if cg.isdigit() else None,
                "after_idle_exit": {
                    "processes": len(left),
                    "bytes": sum(proc_status(p)["VmRSS"] for p in left),
                    "main_pid": int(after["MainPID"]),
                    "result": after["Result"],
                },
            }
    return results


def always_on() -> dict[str, dict]:
    """Each handler as a resident process (never idles out) after the same calls."""
    from trading.handlers import SERVICES

    results = {}
    with tempfile.TemporaryDirectory(prefix="bm-") as tmp:
        env = {**os.environ, **SAMPLE_ENV, "TRADING_RUNTIME_DIR": f"{tmp}/run",
               "TRADING_STATE_DIR": f"{tmp}/state", "TRADING_CACHE_DIR": f"{tmp}/cache",
               "TRADING_IDLE_EXIT": "86400", "TRADING_IN_PROCESS": "never"}
        for k in ("LISTEN_FDS", "LISTEN_PID", "NOTIFY_SOCKET"):
            env.pop(k, None)
        procs = {}
        try:
            for name in WORKLOAD:  # all resident at once, as an always-on deployment would be
                procs[name] = subprocess.Popen([sys.executable, "-m", SERVICES[name]], env=env,
                                               stdout=subprocess.DEVNULL,
                                               stderr=subprocess.DEVNULL)
            for name in WORKLOAD:
                path = Path(tmp) / "run" / f"{name}.sock"
                wait_for(path.exists, 30, f"{path}")
            for name, calls in WORKLOAD.items():
                for method, params in calls:
                    call(Path(tmp) / "run" / f"{name}.sock", method, params)
            time.sleep(2)  # idle again: what it costs between calls, all day
            for name, p in procs.items():
                st = proc_status(p.pid)
                results[name] = {"resident_rss_bytes": st["VmRSS"], "peak_rss_bytes": st["VmHWM"]}
        finally:
            for p in procs.values():
                p.terminate()
            for p in procs.values():
                p.wait(40)
    return results


def mib(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:.1f} MiB"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--idle-exit", type=float, default=3.0,
                    help="idle exit for the on-demand run, seconds (drop-in; shipped: 30)")
    ap.add_argument("--concurrent", type=int, default=1,
                    help="clients calling each service at once (18: all it takes in)")
    ap.add_argument("--json-only", action="store_true")
    args = ap.parse_args()
    demand = on_demand(args.idle_exit, args.concurrent)
    resident = always_on()
    total_idle = sum(r["after_idle_exit"]["bytes"] for r in demand.values())
    total_resident = sum(r["resident_rss_bytes"] for r in resident.values())
    result = {"bench": "memory", "on_demand": demand, "always_on": resident,
              "totals": {"on_demand_idle_bytes": total_idle,
                         "always_on_idle_bytes": total_resident,
                         "on_demand_peak_bytes": sum(r["peak_rss_bytes"] for r in demand.values())}}
    if not args.json_only:
        print("memory: on demand under systemd (socket activation) vs always-on processes")
        print(f"{'service':<13}{'peak serving':>14}{'cgroup':>12}{'after idle exit':>17}"
              f"{'always-on idle':>16}{'calls':>8}")
        for name, d in demand.items():
            a = d["after_idle_exit"]
            idle = f"{a['processes']} proc, {a['bytes']} B"
            print(f"{name:<13}{mib(d['peak_rss_bytes']):>14}{mib(d['cgroup_memory_bytes']):>12}"
                  f"{idle:>17}{mib(resident[name]['resident_rss_bytes']):>16}"
                  f"{d['calls_s']:>7.2f}s"
                  + (f"  ({d['concurrent']} at once, {d['refused']} refused)"
                     if d["concurrent"] > 1 else ""))
        print(f"{'total':<13}{mib(result['totals']['on_demand_peak_bytes']):>14}{'':>12}"
              f"{str(total_idle) + ' B':>17}{mib(total_resident):>16}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
