"""A hostile local client cannot starve the others or keep a service from stopping.

Each test drives a real Server on a real Unix socket from a thread, with the limits set small
so the attack and the defence both happen in a second or two; a legitimate client must be
answered within the promise (5 s) while the attack goes on.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import pytest
from conftest import wait_for
from support.running import read_line

PROMISE_S = 5.0


def test_slowloris_connections_do_not_starve_a_legitimate_client(serve):
    """16 connections that each trickle a byte at a time hold every worker; the whole-request
    deadline and the pressure rule free them, and a legitimate call is answered at once."""
    r = serve(max_connections=4, request_timeout=2.0, pressure_grace=0.3, max_per_peer=64)
    stop = threading.Event()
    attackers = []

    def trickle():
        try:
            with r.raw() as s:
                attackers.append(s)
                while not stop.is_set():
                    s.send(b" ")
                    time.sleep(0.2)
        except OSError:
            pass  # closed by the server: expected

    threads = [threading.Thread(target=trickle) for _ in range(16)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: r.server.stats.open_connections >= 4, what="the attack to fill the workers")
        answer, took = r.legit_call(value="hello")
        assert answer["result"] == "hello"
        assert took < PROMISE_S
    finally:
        stop.set()
        for t in threads:
            t.join(10)


def test_a_request_that_never_completes_is_closed_at_its_deadline_even_if_bytes_keep_coming(serve):
    r = serve(request_timeout=1.0)
    with r.raw() as s:
        t0 = time.monotonic()
        s.sendall(b'{"jsonrpc": "2.0", ')
        answer = None
        while time.monotonic() - t0 < 5:
            try:
                s.sendall(b" ")  # a byte every 100 ms: a receive timeout would never fire
            except OSError:
                pass  # closed: its answer is already waiting to be read
            s.settimeout(0.1)
            try:
                data = s.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if data:
                answer = json.loads(data.splitlines()[0])
            break
        took = time.monotonic() - t0
    assert answer is not None and answer["error"]["data"]["problem"] == "request-timeout"
    assert 0.9 <= took < 3.0


def test_idle_connections_give_way_when_a_client_waits(serve):
    r = serve(max_connections=2, conn_idle=60.0, pressure_grace=0.2, max_per_peer=64)
    hogs = [r.raw() for _ in range(2)]
    try:
        wait_for(lambda: r.server.stats.open_connections == 2, what="two idle connections")
        answer, took = r.legit_call(value=1)
        assert answer["result"] == 1 and took < PROMISE_S
    finally:
        for h in hogs:
            h.close()


def test_one_process_cannot_hold_more_than_its_share_of_connections(serve):
    r = serve(max_connections=16, max_per_peer=3)
    held = [r.raw() for _ in range(3)]
    try:
        wait_for(lambda: r.server.stats.open_connections == 3, what="three connections")
        with r.raw() as extra:
            extra.sendall(b'{"jsonrpc": "2.0", "id": 5, "method": "echo", "params": {"value": 1}}\n')
            answer = read_line(extra)
        assert answer["error"]["data"]["problem"] == "too-many-connections"
        # another process is not affected
        code = ("import json, socket, sys; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]);"
                "s.sendall(b'{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"echo\",\"params\":{\"value\":2}}\\n');"
                "print(s.recv(4096).decode())")
        out = subprocess.run([sys.executable, "-c", code, str(r.path)], capture_output=True,
                             text=True, timeout=30)
        assert json.loads(out.stdout)["result"] == 2
    finally:
        for h in held:
            h.close()


def test_a_batch_past_the_limit_is_refused_whole_before_anything_runs(serve):
    r = serve(max_batch=8)
    batch = [{"jsonrpc": "2.0", "id": i, "method": "sleep", "params": {"seconds": 1}}
             for i in range(9)]
    t0 = time.monotonic()
    with r.raw() as s:
        s.sendall(json.dumps(batch).encode() + b"\n")
        answer = read_line(s)
    assert answer["error"]["data"] == {"problem": "batch-too-large", "limit": 8}
    assert time.monotonic() - t0 < 1.0  # nothing of it ran
    assert r.server.stats.requests == 1


def test_a_refused_peer_that_sends_nothing_holds_a_worker_only_for_a_moment(serve):
    r = serve(authorize=lambda pid, uid, gid: "not you", max_connections=1)
    silent = r.raw()
    try:
        t0 = time.monotonic()
        silent.settimeout(5)
        answer = read_line(silent)  # refused without waiting for a request that never comes
        assert answer["error"]["data"]["problem"] == "forbidden"
        assert time.monotonic() - t0 < 1.0
        wait_for(lambda: r.server.stats.open_connections == 0, timeout=2,
                 what="the refused connection to free its worker")
    finally:
        silent.close()


@pytest.mark.slow
def test_stop_exits_by_its_deadline_with_a_request_stuck(serve):
    r = serve(drain_timeout=1.0)
    stuck = r.raw()
    # 4 s: past the drain deadline, and over soon after, so no thread outlives the test
    stuck.sendall(b'{"jsonrpc": "2.0", "id": 1, "method": "sleep", "params": {"seconds": 4}}\n')
    wait_for(lambda: r.server.stats.in_flight == 1, what="the request to be in flight")
    t0 = time.monotonic()
    r.server.stop()
    r.thread.join(10)
    assert not r.thread.is_alive() and r.code == 0
    assert time.monotonic() - t0 < 3.0
    stuck.close()


def test_a_request_whose_client_hung_up_is_flagged_cancelled(serve):
    r = serve()
    s = r.raw()
    s.sendall(b'{"jsonrpc": "2.0", "id": 1, "method": "until_cancelled", "params": {"seconds": 20}}\n')
    wait_for(lambda: r.server.stats.in_flight == 1, what="the request to be in flight")
    t0 = time.monotonic()
    s.close()
    wait_for(lambda: getattr(r.service, "outcome", None), timeout=5, what="the method to stop")
    assert r.service.outcome["cancelled"] is True
    assert time.monotonic() - t0 < 2.0


def test_a_services_peers_client_leaves_no_connection_open_between_calls(serve):
    """A peer's open connection would keep it from its idle exit for as long as the caller
    lives (market-data exited after ~60 s instead of 30 while prediction was up)."""
    from trading import config
    from trading.runtime.client import Client

    r = serve()
    cfg = config.get()
    client = Client(cfg, in_process="never", keep_connections=False)
    client.socket_path = lambda service: r.path
    assert client.call("slow", "echo", {"value": 3}) == 3
    wait_for(lambda: r.server.stats.open_connections == 0, timeout=2,
             what="the peers client to close its connection")
    # concurrent calls each get their own connection
    results = []
    threads = [threading.Thread(target=lambda i=i: results.append(
        client.call("slow", "sleep", {"seconds": 0.1})["slept"])) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == [0.1] * 6


def test_a_training_job_stops_when_cancelled_and_frees_the_slot(asx_daily):
    from trading import handlers
    from trading.errors import Cancelled
    from trading.handlers.training import Training
    from trading.runtime.service import Context

    svc = Training(Context(peers=handlers.client(in_process="always")))
    outcome = {}

    def train():
        try:
            outcome["result"] = svc.train(symbols=["CBA", "NAB", "BHP", "ANZ"],
                                          source=f"csv:{asx_daily}", folds=12)
        except Cancelled as exc:
            outcome["cancelled"] = exc

    t = threading.Thread(target=train)
    t.start()
    try:
        wait_for(lambda: svc.progress() is not None, what="the job to start")
        assert svc.cancel()["job"] == "train"
        t.join(60)
        assert "cancelled" in outcome, outcome
        assert "cancelled by request" in outcome["cancelled"].message
        assert svc.progress() is None and svc.cancel() is None  # the slot is free
    finally:
        t.join(60)
        svc.close()
