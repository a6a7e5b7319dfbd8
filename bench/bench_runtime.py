#!/usr/bin/env python3
"""Runtime benchmark: cold start, warm round trip and throughput of a handler, next to the
physical references measured in the same run: a minimal Python echo server on a Unix socket
and ``python -c pass``.

    .venv/bin/python bench/bench_runtime.py [--runs 15] [--requests 5000] [--unpinned] [--json-only]

Cold start = connect to a socket whose handler is not running (systemd-socket-activate holds
the socket and starts the handler on the connection, as systemd does) until the first answer.
Warm = sequential requests on one open connection, client and servers pinned to one CPU and
taking turns in blocks of 20 requests; ``--unpinned`` leaves them where the scheduler puts them
(each round trip then may pay a cross-CPU wake-up, whose price swings with the host). Cold
runs alternate with the references. Targets: cold health_check <= 3.5x ``python -c pass``;
warm p50 <= 2.5x the echo server's, pinned and unpinned. Prints a table and a JSON line.
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support.wire import Connection  # noqa: E402  (the tests' one client, by path)

PYTHON = sys.executable
ECHO_SERVER = r"""
import socket, sys
s = socket.socket(fileno=3)
while True:
    c, _ = s.accept()
    f = c.makefile("rb")
    for line in f:
        c.sendall(line)
    c.close()
"""
REQUEST = b'{"jsonrpc":"2.0","method":"health_check","id":1}\n'
ECHO_REQUEST = b'{"jsonrpc":"2.0","method":"rpc.ping","id":1}\n'


def pass_env() -> list[str]:
    keep = ("TRADING_", "PYTHON", "XDG_", "HOME")
    return [f"-E{k}={v}" for k, v in os.environ.items() if k.startswith(keep)]


def activated(path: Path, argv: list[str]) -> subprocess.Popen:
    if path.exists():
        path.unlink()
    proc = subprocess.Popen(["systemd-socket-activate", "-l", str(path), *pass_env(), *argv],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not path.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{path} never appeared")
        time.sleep(0.005)
    time.sleep(0.05)  # bind() creates the path a moment before listen(); not part of a timing
    return proc


def connect(path: Path) -> Connection:
    return Connection.open(path, timeout=30)


def roundtrip(c: Connection, request: bytes) -> bytes:
    """One ready-made request line out, one whole answer line back."""
    c.send_raw(request)
    return c.read_line()


def cold(path: Path, argv: list[str], request: bytes, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        proc = activated(path, argv)
        t0 = time.perf_counter()
        c = connect(path)
        line = roundtrip(c, request)
        times.append(time.perf_counter() - t0)
        assert line.startswith(b"{"), line  # a whole line: read_line waits for its newline
        c.close()
        proc.terminate()
        proc.wait()
    return times


def warm(subjects: list[tuple[Path, list[str], bytes]], n: int, block: int = 20,
         pinned: bool = True) -> list[tuple[list[float], float]]:
    """Sequential requests on one connection per subject; the subjects take turns in blocks
    of ``block`` requests, so a change in the machine's speed hits them alike."""
    procs, conns = [], []
    # Pinned, client and servers share one CPU: on a VM, waking a process on another CPU
    # costs an interrupt whose price swings with the host's load (16-70 us seen for the same
    # echo). On one CPU a round trip is two context switches, and the figure is the software's.
    mask = os.sched_getaffinity(0)
    cpu = {min(mask)}
    if pinned:
        os.sched_setaffinity(0, cpu)
    try:
        for path, argv, request in subjects:
            procs.append(activated(path, argv))
            if pinned:
                os.sched_setaffinity(procs[-1].pid, cpu)  # exec keeps it; threads inherit it
            c = connect(path)
            for _ in range(200):  # warm up: process started, code paths hot
                roundtrip(c, request)
            conns.append((c, request))
        times: list[list[float]] = [[] for _ in subjects]
        spent = [0.0 for _ in subjects]
        for _ in range(max(1, n // block)):
            for i, (c, request) in enumerate(conns):
                t_block = time.perf_counter()
                for _ in range(block):
                    t0 = time.perf_counter()
                    roundtrip(c, request)
                    times[i].append(time.perf_counter() - t0)
                spent[i] += time.perf_counter() - t_block
        return [(t, len(t) / sp) for t, sp in zip(times, spent)]
    finally:
        os.sched_setaffinity(0, mask)
        for c, _ in conns:
            c.close()
        for p in procs:
            p.terminate()
            p.wait()


def python_pass(runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([PYTHON, "-c", "pass"], check=True)
        times.append(time.perf_counter() - t0)
    return times


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=15, help="cold starts per subject (median)")
    ap.add_argument("--requests", type=int, default=5000, help="warm requests per subject")
    ap.add_argument("--service", default="market-data", help="handler to measure")
    ap.add_argument("--unpinned", action="store_true",
                    help="warm loop without pinning client and servers to one CPU")
    ap.add_argument("--json-only", action="store_true")
    args = ap.parse_args()

    from trading.handlers import SERVICES

    # Bytecode as an install has it: a development tree run with PYTHONDONTWRITEBYTECODE (set
    # on some machines) recompiles every edited module on every cold start, ~5-10 ms that
    # no installed handler pays.
    import compileall

    root = Path(__file__).resolve().parent.parent
    for part in ("lib", "handlers", "cli"):
        compileall.compile_dir(str(root / part), quiet=1)
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

    tmp = Path(tempfile.mkdtemp(prefix="bench-rt-"))
    os.environ.setdefault("TRADING_STATE_DIR", str(tmp / "state"))
    os.environ.setdefault("TRADING_CACHE_DIR", str(tmp / "cache"))
    # What the unit runs: the handler's console script (python -m where it is not installed).
    script = Path(PYTHON).with_name(f"trading-{args.service}")
    handler = [str(script)] if script.exists() else [PYTHON, "-m", SERVICES[args.service]]
    echo = [PYTHON, "-c", ECHO_SERVER]
    sock = tmp / "b.sock"

    # Interleaved, one of each per round, so drift in the machine's speed (a shared VM) hits
    # the subjects and the reference alike.
    passes, colds, echoes = [], [], []
    for _ in range(args.runs):
        passes += python_pass(1)
        colds += cold(sock, handler, REQUEST, 1)
        echoes += cold(sock, echo, ECHO_REQUEST, 1)
    ref_pass = statistics.median(passes)
    cold_handler = statistics.median(colds)
    cold_echo = statistics.median(echoes)
    (warm_handler, rps_handler), (warm_echo, rps_echo) = warm(
        [(sock, handler, REQUEST), (tmp / "echo.sock", echo, ECHO_REQUEST)], args.requests,
        pinned=not args.unpinned)

    result = {
        "service": args.service,
        "pinned": not args.unpinned,
        "python_c_pass_s": ref_pass,
        "cold": {"handler_s": cold_handler, "echo_s": cold_echo},
        "warm": {
            "handler": {"p50_s": pct(warm_handler, 50), "p99_s": pct(warm_handler, 99),
                        "rps": rps_handler},
            "echo": {"p50_s": pct(warm_echo, 50), "p99_s": pct(warm_echo, 99), "rps": rps_echo},
        },
    }
    result["ratios"] = {
        "cold_handler_vs_python_pass": cold_handler / ref_pass,
        "warm_p50_handler_vs_echo": pct(warm_handler, 50) / pct(warm_echo, 50),
    }
    result["targets"] = {
        "cold_handler_vs_python_pass<=3.5": result["ratios"]["cold_handler_vs_python_pass"] <= 3.5,
        "warm_p50_handler_vs_echo<=2.5": result["ratios"]["warm_p50_handler_vs_echo"] <= 2.5,
    }
    if not args.json_only:
        ms = lambda v: f"{v * 1000:.3f} ms"  # noqa: E731
        w = result["warm"]
        print(f"runtime benchmark ({args.service} health_check), {args.runs} cold runs, "
              f"{args.requests} warm requests ({'unpinned' if args.unpinned else 'pinned'})")
        print(f"{'':28}{'handler':>14}{'echo server':>14}{'python -c pass':>16}")
        print(f"{'cold start (median)':28}{ms(cold_handler):>14}{ms(cold_echo):>14}{ms(ref_pass):>16}")
        print(f"{'warm p50':28}{ms(w['handler']['p50_s']):>14}{ms(w['echo']['p50_s']):>14}")
        print(f"{'warm p99':28}{ms(w['handler']['p99_s']):>14}{ms(w['echo']['p99_s']):>14}")
        print(f"{'requests/s (one conn)':28}{w['handler']['rps']:>14.0f}{w['echo']['rps']:>14.0f}")
        r = result["ratios"]
        print(f"cold handler / python -c pass = {r['cold_handler_vs_python_pass']:.2f} (target <= 3.5)")
        print(f"warm p50 handler / echo       = {r['warm_p50_handler_vs_echo']:.2f} (target <= 2.5)")
    print(json.dumps(result))
    return 0 if all(result["targets"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
