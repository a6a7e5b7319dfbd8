#!/usr/bin/env python3
"""Dashboard benchmark (issue 18): cold first byte, warm page p50, page weight, peak RSS.

    .venv/bin/python bench/bench_web.py [--runs 9] [--requests 300] [--json-only]

- **Cold first byte**: ``systemd-socket-activate`` holds a TCP socket (as trading-web.socket
  does) and starts ``python -m trading.web`` on the connection; timed from connect to the first
  byte of ``GET /``. Runs alternate with ``python -c pass`` (the physical reference) in the same
  loop; medians. Targets: <= 0.5 s and <= 8x ``python -c pass``.
- **Warm p50**: sequential ``GET /`` (the overview) and ``GET /symbol/CBA.AX`` on one
  keep-alive connection to a running instance. Target: <= 20 ms.
- **Page weight**: every byte the symbol page loads (HTML, CSS, scripts, the chart library,
  its JSON), uncompressed. Target: <= 400 KB.
- **Peak RSS**: the dashboard process's VmHWM after serving every page. Target: <= 60 MB.

The store holds predictions made by the prediction service on the sample data; market-data
and training run as their own socket-activated processes, as installed, so their imports
(numpy) are not the dashboard's.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PYTHON = sys.executable
PAGES = ["/", "/symbol/CBA.AX", "/history", "/accuracy", "/models", "/services", "/events"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env_args(env: dict[str, str]) -> list[str]:
    return [f"-E{k}={v}" for k, v in env.items() if k.startswith(("TRADING_", "HOME", "XDG_"))]


def http(s: socket.socket, path: str) -> tuple[float, bytes]:
    """One request on an open keep-alive connection: (seconds, body)."""
    t0 = time.perf_counter()
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(65536)
    head, _, body = buf.partition(b"\r\n\r\n")
    length = int([h.split(b":", 1)[1] for h in head.split(b"\r\n")
                  if h.lower().startswith(b"content-length:")][0])
    while len(body) < length:
        body += s.recv(65536)
    return time.perf_counter() - t0, body


def wait_listening(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.01)
    raise RuntimeError(f"nothing listens on {port}")


def activated(port: int, env: dict[str, str]) -> subprocess.Popen:
    proc = subprocess.Popen(["systemd-socket-activate", "-l", f"127.0.0.1:{port}",
                             *env_args(env), PYTHON, "-m", "trading.web", "--idle-exit", "60"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)  # systemd-socket-activate binds, then waits: not part of a timing
    return proc


def cold_first_byte(port: int, env: dict[str, str]) -> float:
    proc = activated(port, env)
    try:
        t0 = time.perf_counter()
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            s.recv(1)
            return time.perf_counter() - t0
    finally:
        proc.terminate()
        proc.wait(10)


def python_pass() -> float:
    t0 = time.perf_counter()
    subprocess.run([PYTHON, "-c", "pass"], check=True)
    return time.perf_counter() - t0


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--json-only", action="store_true")
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench-web-"))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("TRADING_")},
           "TRADING_STATE_DIR": str(root / "state"), "TRADING_CACHE_DIR": str(root / "cache"),
           "TRADING_RUNTIME_DIR": str(root / "run"), "TRADING_SOURCE": "sample",
           "TRADING_NEWS_SOURCE": "sample", "TRADING_LOG_LEVEL": "WARNING"}
    (root / "run").mkdir(parents=True)
    subprocess.run([PYTHON, "-m", "trading.cli.main", "predict", "--source", "sample"],
                   env={**env, "TRADING_IN_PROCESS": "always"}, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peers = [subprocess.Popen(["systemd-socket-activate", "-l", str(root / "run" / f"{n}.sock"),
                               *env_args(env), PYTHON, "-m", f"trading.handlers.{m}",
                               "--idle-exit", "600"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for n, m in (("market-data", "market_data"), ("training", "training"))]
    try:
        time.sleep(0.5)
        port = free_port()
        # One warm-up start: compiles the templates into the bytecode cache, as the first
        # request after an install does once.
        cold_first_byte(port, env)
        cold, ref = [], []
        for _ in range(args.runs):
            cold.append(cold_first_byte(port, env))
            ref.append(python_pass())

        proc = activated(port, env)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
                weight = {}
                _, html = http(s, "/symbol/CBA.AX")
                weight["/symbol/CBA.AX"] = len(html)
                for asset in ("/static/app.css", "/static/chart.js",
                              "/static/vendor/lightweight-charts.standalone.production.js",
                              "/api/symbol/CBA.AX"):
                    weight[asset] = len(http(s, asset)[1])
                for p in PAGES:
                    http(s, p)
                warm = {}
                for p in ("/", "/symbol/CBA.AX"):
                    times = [http(s, p)[0] for _ in range(args.requests)]
                    warm[p] = statistics.median(times)
                rss = peak_rss(proc.pid)
        finally:
            proc.terminate()
            proc.wait(10)
    finally:
        for p in peers:
            p.terminate()
            p.wait(10)

    result = {
        "cold_first_byte_ms": round(statistics.median(cold) * 1000, 1),
        "python_pass_ms": round(statistics.median(ref) * 1000, 1),
        "cold_ratio": round(statistics.median(cold) / statistics.median(ref), 2),
        "warm_p50_ms": {p: round(t * 1000, 2) for p, t in warm.items()},
        "page_weight_kb": round(sum(weight.values()) / 1024, 1),
        "page_parts_kb": {k: round(v / 1024, 1) for k, v in weight.items()},
        "peak_rss_mib": round(rss / 2**20, 1),
    }
    if not args.json_only:
        print(f"cold first byte (median of {args.runs}): {result['cold_first_byte_ms']} ms; "
              f"python -c pass {result['python_pass_ms']} ms; ratio {result['cold_ratio']}x "
              "(targets <= 500 ms, <= 8x)")
        for p, t in result["warm_p50_ms"].items():
            print(f"warm p50 {p}: {t} ms (target <= 20 ms)")
        print(f"page weight /symbol/CBA.AX: {result['page_weight_kb']} KB (target <= 400 KB)")
        print(f"peak RSS: {result['peak_rss_mib']} MiB (target <= 60 MB)")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
