"""Hostile clients against the installed stack on a real systemd (tests/sandbox.py), where
systemd is the point: the shipped MemoryMax= and start limits, the socket staying up, SIGTERM.

The promise (issue 14): after any sequence of requests from one client, a legitimate call from
another is answered within 5 s, without an administrator.
"""

from __future__ import annotations

import json
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from support import busy_client
from support.wire import PROMISE_S, legit, rpc
from sandbox import sock

pytestmark = [pytest.mark.systemd, pytest.mark.slow]

_TRICKLE = r"""
import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
try:
    while True:
        s.send(b" ")
        time.sleep(1.0)
except OSError:
    pass
"""


def test_memory_attack_is_bounded_under_the_shipped_memory_cap(sd):
    """One 31 KB batch of 300 ten-year get_bars was OOM-killed under MemoryMax=400M, and ten
    of those tripped the start limit and left the socket failed until reset-failed. Now a
    batch is at most 32 requests and 4 MiB of answers, and one process at most 8
    connections: the same process sending its worst, on every connection it may hold, leaves
    the handler alive (same PID, no restart) and a legitimate call answered at once."""
    path = sock(sd, "market-data")
    assert sd.show("trading-market-data.service", "MemoryMax")["MemoryMax"] == str(400 << 20)
    first = rpc(path, "health_check")["result"]["pid"]
    huge = [{"jsonrpc": "2.0", "id": i, "method": "get_bars",
             "params": {"symbol": f"Z{i:03d}", "period": "10y", "source": "sample"}}
            for i in range(300)]
    small = huge[:32]
    answers: list = []

    def attack(batch):
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(120)
                s.connect(str(path))
                s.sendall(json.dumps(batch).encode() + b"\n")
                data = b""
                while not data.endswith(b"\n"):
                    chunk = s.recv(1 << 20)
                    if not chunk:
                        break
                    data += chunk
                answers.append(json.loads(data))
        except (OSError, ValueError) as exc:
            answers.append(exc)

    attack(huge)  # the old attack, as it was: refused whole
    assert answers[0]["error"]["data"]["problem"] == "batch-too-large"
    threads = [threading.Thread(target=attack, args=(small,)) for _ in range(8)]
    for t in threads:
        t.start()
    took = []
    while any(t.is_alive() for t in threads):
        took.append(legit(path))  # from another process's point of view: a new connection
        time.sleep(0.2)
    for t in threads:
        t.join(120)
    assert all(isinstance(a, list) for a in answers[1:]), answers[1:]
    done = sum(1 for a in answers[1:] for r in a if "result" in r)
    refused = sum(1 for a in answers[1:] for r in a
                  if "error" in r and r["error"]["data"]["problem"] == "batch-too-large")
    assert done and refused and done + refused == 8 * 32
    assert max(took) < PROMISE_S, took
    after = rpc(path, "health_check")["result"]
    assert after["pid"] == first, "the handler was restarted (OOM-killed?)"
    # The cap itself proves nothing where the manager has no memory controller (cgroup v1,
    # as on this host: MemoryMax= is set but not enforced). The handler's own high-water mark
    # is measured against it instead, with MemoryHigh='s margin: it held without the cap.
    limits = sd.show("trading-market-data.service", "MemoryMax", "MemoryHigh")
    peak = _peak_rss(first)
    assert peak < int(limits["MemoryHigh"]) <= int(limits["MemoryMax"]), (peak, limits)
    print(f"\nmemory attack: {done} answered, {refused} refused, legitimate calls "
          f"{min(took):.3f}-{max(took):.3f}s, handler peak {peak >> 20} MiB "
          f"(MemoryHigh {int(limits['MemoryHigh']) >> 20} MiB, MemoryMax "
          f"{int(limits['MemoryMax']) >> 20} MiB)")


def _peak_rss(pid: int) -> int:
    """A process's peak resident memory in bytes (VmHWM), measured whatever cgroups allow."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) << 10
    raise AssertionError(f"no VmHWM for pid {pid}")


def test_slowloris_on_the_real_socket_leaves_room_for_a_legitimate_client(sd):
    path = sock(sd, "sentiment")
    # 16 attacking processes (one connection each: the per-process cap does not help here),
    # each sending a byte a second: every worker is taken by a request that never ends.
    attackers = [subprocess.Popen([sys.executable, "-c", _TRICKLE, str(path)])
                 for _ in range(16)]
    try:
        time.sleep(2.0)
        took = [legit(path) for _ in range(3)]
        assert max(took) < PROMISE_S, took
    finally:
        for a in attackers:
            a.kill()
            a.wait()
    print(f"\nslowloris: legitimate calls answered in {', '.join(f'{x:.3f}' for x in took)} s")


@pytest.mark.parametrize("service", ["prediction", "sentiment"])
def test_busy_clients_leave_room_for_trading_history_and_every_other_call(sd, service):
    """Issue 27: two processes, each within the per-process cap (8 connections), each
    connection sending a health_check every 0.2 s, kept every other client waiting for as
    long as they went on: `trading history` exited 4 after 30 s. Here four such processes
    (32 connections, 16 workers): `trading history` and a health_check from another process
    are answered well within the promise, every time."""
    path = sock(sd, service)
    rpc(path, "health_check")  # started, and warm
    busy = busy_client.start(path, processes=4, conns=8, gap=0.2)
    took, history = [], []
    try:
        time.sleep(1.0)
        for _ in range(6):
            took.append(legit(path))
            if service == "prediction":
                t0 = time.monotonic()
                out = sd.trading("history", "--json", timeout=60)
                history.append(time.monotonic() - t0)
                assert isinstance(json.loads(out.stdout), list)
    finally:
        answered = busy_client.stop(busy)
    assert max(took) < PROMISE_S and statistics.median(took) < 1.0, took
    assert all(n > 0 for n in answered), answered
    if history:
        assert max(history) < PROMISE_S, history  # the command's own start included
    print(f"\nbusy clients on {service} (4 processes x 8, 0.2 s apart): health_check p50 "
          f"{statistics.median(took) * 1000:.1f} ms, max {max(took) * 1000:.1f} ms"
          + (f"; trading history {min(history):.2f}-{max(history):.2f} s" if history else "")
          + f"; busy clients answered {sum(answered)} times")


def test_stop_with_a_request_half_sent_ends_at_once_and_the_socket_serves_on(sd):
    """SIGTERM used to wait for every connection before its deadline applied, so a stuck
    client kept a stopping handler alive until systemd killed it at TimeoutStopSec (35 s)."""
    path = sock(sd, "prediction")
    first = rpc(path, "health_check")["result"]["pid"]
    with socket.socket(socket.AF_UNIX) as stuck:
        stuck.connect(str(path))
        stuck.sendall(b'{"jsonrpc": "2.0", "id": 1, "method": "hist')  # never finished
        t0 = time.monotonic()
        sd.systemctl("stop", "trading-prediction.service", timeout=60)
        took = time.monotonic() - t0
    assert took < 10, f"stop took {took:.1f}s"
    assert sd.show("trading-prediction.service", "Result")["Result"] == "success"
    again = rpc(path, "health_check")["result"]["pid"]
    assert again != first
    print(f"\nstop with a stuck client: {took:.2f}s")
