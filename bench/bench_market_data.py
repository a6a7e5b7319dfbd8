"""Benchmark the market-data service: cold start from a warm cache, warm latency, bulk_fetch.

    .venv/bin/python bench/bench_market_data.py [-n 15]

Everything runs in private temporary directories with the ``sample`` source (no network):

- **baseline**: a fresh ``python -c pass``, median of N.
- **cold**: the handler waits under ``systemd-socket-activate`` (socket listening, process not
  started); a fresh interpreter connects, sends one ``get_market_data`` and reads the answer.
  Timed from launching that interpreter to its exit, so it includes the client interpreter, the
  handler's start (exec, imports, store) and the answer from the warm cache. Median of N, each
  with a new handler process. Target: <= 5x baseline.
- **warm**: one connection to a running handler, ``get_market_data`` round trips, median.
  Target: <= 2 ms.
- **bulk 200**: ``bulk_fetch`` of 200 symbols over the socket to a running handler, warm cache.
  Target: <= 0.5 s. Reported for a handler that just started (store warm, memory cold) and for
  repeated calls.

Prints a table, then one JSON object.
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support.wire import Connection  # noqa: E402  (the tests' one client, by path)

PYTHON = sys.executable
MODULE = "trading.handlers.market_data"
SYMBOLS_200 = [f"B{i:03d}" for i in range(193)] + ["CBA", "ANZ", "NAB", "WBC", "MQG", "COL",
                                                    "BHP"]

# The cold client stays a bare socket on purpose: it is timed from the interpreter's launch,
# and importing the tests' client (and trading) would add its imports to the figure.
CLIENT = r"""
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
s.sendall(b'{"jsonrpc":"2.0","id":1,"method":"get_market_data","params":{"symbol":"CBA","source":"sample"}}\n')
buf = b""
while not buf.endswith(b"\n"):
    chunk = s.recv(65536)
    if not chunk:
        break
    buf += chunk
r = json.loads(buf)
assert "result" in r, r
"""


def listening(path: Path) -> bool:
    """True once ``path`` is a listening Unix socket (read from /proc, without connecting:
    a connection would start the handler)."""
    with open("/proc/net/unix") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 8 and parts[7] == str(path) and parts[3] == "00010000":
                return True
    return False


class Handler:
    """The handler under systemd-socket-activate (started on the first connection)."""

    def __init__(self, path: Path, env: dict[str, str]) -> None:
        self.path = path
        if path.exists():
            path.unlink()
        self.proc = subprocess.Popen(
            # systemd-socket-activate passes only HOME, TERM and PATH unless told with -E.
            ["systemd-socket-activate", "-l", str(path),
             *[f"-E{k}={v}" for k, v in env.items() if k.startswith(("TRADING_", "PYTHON"))],
             PYTHON, "-m", MODULE],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not listening(path):
            if time.monotonic() > deadline:
                raise RuntimeError("the socket never listened")
            time.sleep(0.005)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Conn:
    """One connection to the handler; a service error is an exception."""

    def __init__(self, path: Path) -> None:
        self.c = Connection.open(path, timeout=None)
        self.n = 0

    def call(self, method: str, **params):
        self.n += 1
        r = self.c.call(method, params, id=self.n)
        if "error" in r:
            raise RuntimeError(r["error"])
        return r["result"]

    def close(self) -> None:
        self.c.close()


def timed(cmd: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, env=env, check=True)
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=15, help="repetitions for the medians")
    args = ap.parse_args()
    n = args.n
    root = Path(tempfile.mkdtemp(prefix="bench-md-"))
    # PYTHONDONTWRITEBYTECODE would make every cold start compile the modules again; an
    # installed package has its bytecode, so the bench lets the warm-up write it.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TRADING_", "LISTEN_", "PYTHONDONTWRITEBYTECODE"))}
    env.update(TRADING_RUNTIME_DIR=str(root / "run"), TRADING_STATE_DIR=str(root / "state"),
               TRADING_CACHE_DIR=str(root / "cache"), TRADING_CONFIG=str(root / "none.toml"),
               TRADING_SOURCE="sample", TRADING_LOG_LEVEL="WARNING", TRADING_IDLE_EXIT="60")
    (root / "run").mkdir()
    sock = root / "run" / "market-data.sock"
    out: dict[str, float] = {}
    try:
        # Warm the cache (in a separate process, like an earlier run of the service would).
        subprocess.run([PYTHON, "-c",
                        "from trading.handlers.market_data import MarketData as M\n"
                        f"M().bulk_fetch({SYMBOLS_200!r}, source='sample')"], env=env,
                       check=True)

        for _ in range(3):
            timed([PYTHON, "-c", "pass"], env)
        # Interleaved, so both sides of the ratio see the same load on a shared machine.
        base, cold = [], []
        for i in range(n + 1):
            h = Handler(sock, env)
            try:
                b = timed([PYTHON, "-c", "pass"], env)
                c = timed([PYTHON, "-c", CLIENT, str(sock)], env)
            finally:
                h.stop()
            if i:  # the first round warms the page cache and writes bytecode
                base.append(b)
                cold.append(c)
        out["python_pass_ms"] = 1000 * statistics.median(base)
        out["cold_get_market_data_ms"] = 1000 * statistics.median(cold)
        out["cold_ratio"] = out["cold_get_market_data_ms"] / out["python_pass_ms"]

        h = Handler(sock, env)
        try:
            c = Conn(sock)
            t = time.perf_counter()
            c.call("bulk_fetch", symbols=SYMBOLS_200, source="sample")
            out["bulk_200_first_s"] = time.perf_counter() - t  # includes the handler's start
            bulk = []
            for _ in range(max(5, n // 3)):
                t = time.perf_counter()
                r = c.call("bulk_fetch", symbols=SYMBOLS_200, source="sample")
                bulk.append(time.perf_counter() - t)
            assert len(r["results"]) == 200 and not r["errors"], r["errors"]
            out["bulk_200_s"] = statistics.median(bulk)
            warm = []
            for _ in range(max(1000, n)):
                t = time.perf_counter()
                c.call("get_market_data", symbol="CBA", source="sample")
                warm.append(time.perf_counter() - t)
            out["warm_get_market_data_ms"] = 1000 * statistics.median(warm)
            out["warm_p95_ms"] = 1000 * sorted(warm)[int(len(warm) * 0.95)]
            c.close()
        finally:
            h.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)

    rows = [
        ("python -c pass", f"{out['python_pass_ms']:.1f} ms", ""),
        ("cold get_market_data (warm cache)", f"{out['cold_get_market_data_ms']:.1f} ms",
         f"{out['cold_ratio']:.2f}x pass (target <= 5x)"),
        ("warm get_market_data", f"{out['warm_get_market_data_ms']:.3f} ms",
         f"p95 {out['warm_p95_ms']:.3f} ms (target <= 2 ms)"),
        ("bulk_fetch 200 (sample, warm)", f"{out['bulk_200_s'] * 1000:.1f} ms",
         "target <= 500 ms"),
        ("bulk_fetch 200, fresh handler", f"{out['bulk_200_first_s'] * 1000:.1f} ms",
         "includes the handler's cold start"),
    ]
    w = max(len(r[0]) for r in rows)
    print(f"market-data benchmark (median of {n})")
    for name, value, note in rows:
        print(f"  {name:<{w}}  {value:>12}  {note}")
    out["ok"] = (out["cold_ratio"] <= 5 and out["warm_get_market_data_ms"] <= 2
                 and out["bulk_200_s"] <= 0.5)
    out["n"] = n
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
