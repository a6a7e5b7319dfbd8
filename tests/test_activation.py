"""The activation runtime, driven in-process through real sockets (no systemd needed)."""

from __future__ import annotations

import json
import os
import socket
import threading
import time

import pytest

from support.wire import request
from trading import config
from trading.runtime.activation import bind_unix
from trading.runtime.service import rss_bytes
from conftest import wait_for




def test_many_requests_on_one_connection_and_counters(serve):
    r = serve()
    with r.connect() as s:
        for i in range(50):
            assert s.call("echo", {"value": i}, id=i) == {"jsonrpc": "2.0", "result": i, "id": i}
        health = s.call("health_check")["result"]
    assert health["service"] == "slow" and health["status"] == "ok"
    assert health["requests_served"] == 50
    assert health["rss_bytes"] > 1_000_000 and health["pid"] > 0 and health["version"]


BALLAST = 64 << 20  # bytes a test makes resident to move the RSS by far more than noise


def test_rss_is_read_on_each_call():
    before = rss_bytes()
    ballast = b"\x01" * BALLAST  # written, so resident
    assert rss_bytes() >= before + BALLAST // 2
    del ballast


def test_several_requests_in_one_write_are_all_answered_in_order(serve):
    r = serve()
    with r.connect() as s:
        s.send_raw(b"".join(json.dumps(request("echo", {"value": i}, id=i)).encode() + b"\n"
                            for i in range(20)))
        assert [s.read()["id"] for _ in range(20)] == list(range(20))


def test_a_bug_in_one_request_does_not_stop_the_service(serve):
    r = serve()
    with r.connect() as s:
        err = s.call("boom")["error"]
        assert err["code"] == -32603 and "boom" not in err["message"]  # no internals leak
        assert s.call("echo", {"value": "still here"})["result"] == "still here"


def test_connections_are_served_concurrently_up_to_the_bound(serve):
    r = serve(max_connections=3, reserve=0)  # no workers kept for newcomers: the bound is 3
    peak = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            peak.append((r.server.stats.open_connections, r.server.stats.in_flight))
            time.sleep(0.005)

    w = threading.Thread(target=watch)
    w.start()
    results = []

    def client(i):
        with r.connect() as s:
            results.append(s.call("sleep", {"seconds": 0.4}, id=i)["result"])

    threads = [threading.Thread(target=client, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    stop.set()
    w.join()
    assert len(results) == 6  # past the bound they waited in the backlog; none was refused
    assert max(o for o, _ in peak) == 3
    assert max(f for _, f in peak) == 3


def test_idle_exit_after_the_last_connection_closes(serve):
    r = serve(idle_exit=0.3)
    with r.connect() as s:
        s.call("echo", {"value": 1})
        time.sleep(0.6)  # an open connection keeps the service alive past idle_exit
        assert r.thread.is_alive()
        assert s.call("echo", {"value": 2})["result"] == 2
    assert r.finish() == 0
    assert r.notes[0].startswith("READY=1")
    assert r.notes[-1].startswith("STOPPING=1")


def test_a_forgotten_client_is_closed_and_cannot_pin_the_service(serve):
    r = serve(idle_exit=0.2, conn_idle=0.3)
    s = r.connect()
    assert s.call("echo", {"value": 1})["result"] == 1
    s.sock.settimeout(5)
    assert s.sock.recv(10) == b""  # the server closed the idle connection
    assert r.finish() == 0
    s.close()


def test_a_line_over_the_limit_is_answered_and_closed_and_the_service_lives(serve):
    r = serve(line_limit=1000)
    with r.connect() as s:
        s.send_raw(b"x" * 5000)
        answer = s.read()
        assert answer["error"]["code"] == -32600
        assert answer["error"]["data"] == {"problem": "line-too-long", "limit": 1000}
        assert s.sock.recv(10) == b""
    with r.connect() as s:
        assert s.call("echo", {"value": "ok"})["result"] == "ok"


def test_stop_drains_the_request_in_flight_then_exits(serve):
    r = serve()
    s = r.connect()
    s.send(request("sleep", {"seconds": 0.5}, id=9))
    wait_for(lambda: r.server.stats.in_flight == 1, what="request in flight")
    r.server.stop()
    assert s.read()["result"]["slept"] == 0.5
    assert r.finish() == 0
    s.close()


class Draining:
    """A raw listener that answers one request on the first connection, then shuts it for
    reading and keeps it open, as a handler on its way out does (Server.stop), and answers
    every later connection: the window in which a kept connection's next request meets EPIPE."""

    def __init__(self, path, close_after_read: bool = False):
        self.path = path
        self.listener = bind_unix(path)
        self.close_after_read = close_after_read
        self.requests: list[int] = []  # the connection number of every request read
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.kept: list[socket.socket] = []
        self.drained = threading.Event()  # the first connection is shut for reading
        self.thread.start()

    def _answer(self, conn, n) -> bool:
        line = b""
        while not line.endswith(b"\n"):
            chunk = conn.recv(65536)
            if not chunk:
                return False
            line += chunk
        self.requests.append(n)
        request = json.loads(line)
        if self.close_after_read and n == 1 and len(self.requests) == 2:
            return False  # read it, then "crash" without answering
        conn.sendall(json.dumps({"jsonrpc": "2.0", "id": request["id"],
                                 "result": {"connection": n}}).encode() + b"\n")
        return True

    def _run(self):
        for n in (1, 2):
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.kept.append(conn)
            if n == 1:
                self._answer(conn, n)
                if self.close_after_read:
                    self._answer(conn, n)
                    conn.close()
                else:
                    conn.shutdown(socket.SHUT_RD)
                self.drained.set()
            else:
                self._answer(conn, n)

    def close(self):
        if self.thread.is_alive():  # still in accept(), which closing would not wake
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.connect(str(self.path))
            self.thread.join(5)
        self.listener.close()
        for c in self.kept:
            c.close()


def test_a_request_the_draining_handler_never_read_is_sent_again_once(runtime_dir):
    from trading.runtime.client import Client

    path = runtime_dir / "market-data.sock"
    server = Draining(path)
    client = Client(config.get(), in_process="never", timeout=5)
    try:
        assert client.call("market-data", "echo") == {"connection": 1}
        assert server.drained.wait(5)  # else the next line could beat the shutdown
        # The first connection is shut for reading but still open: the send fails with
        # EPIPE, nothing was read, and the same request goes out on a new connection.
        assert client.call("market-data", "echo") == {"connection": 2}
        assert server.requests == [1, 2]
    finally:
        client.close()
        server.close()


def test_a_request_the_handler_read_is_never_sent_again(runtime_dir):
    from trading.errors import ServiceUnavailable
    from trading.runtime.client import Client

    path = runtime_dir / "market-data.sock"
    server = Draining(path, close_after_read=True)
    client = Client(config.get(), in_process="never", timeout=5)
    try:
        assert client.call("market-data", "echo") == {"connection": 1}
        with pytest.raises(ServiceUnavailable, match="closed the connection before answering"):
            client.call("market-data", "echo")
        assert server.requests == [1, 1]  # read once, and not resent: it may have run
    finally:
        client.close()
        server.close()


def test_watchdog_pings_when_asked(serve):
    r = serve(watchdog_usec=100_000)  # ping every 50 ms
    wait_for(lambda: r.notes.count("WATCHDOG=1") >= 3, what="watchdog pings")


def test_status_line_reports_live_counters(serve):
    r = serve()
    with r.connect() as s:
        s.call("echo", {"value": 1})
        wait_for(lambda: any("1 requests served" in n for n in r.notes), timeout=5,
                 what="STATUS with counters")


def test_a_peer_that_is_not_allowed_gets_a_clear_error(serve):
    seen = []

    def deny(pid, uid, gid):
        seen.append((pid, uid, gid))
        return "access denied: not in group trading"

    r = serve(authorize=deny)
    with r.connect() as s:
        answer = s.call("echo", {"value": 1})
    assert answer["error"]["data"]["problem"] == "forbidden" and answer["id"] == 1
    assert "not in group trading" in answer["error"]["message"]
    import os
    assert seen == [(os.getpid(), os.getuid(), os.getgid())]


def test_authorizer_admits_own_user_and_refuses_strangers():
    from trading.runtime.access import authorizer

    cfg = config.load({"TRADING_ALLOWED_GROUPS": "", "TRADING_ALLOWED_USERS": "12345"})
    check = authorizer(cfg, own_uid=4242)
    assert check(1, 4242, 4242) is None      # the service's own user
    assert check(1, 0, 0) is None            # root
    assert check(1, 12345, 99) is None       # listed user
    reason = check(1, 54321, 54321)
    assert reason and "access denied" in reason


# -- the command line (argparse, only when there is one) and logging -------------
@pytest.mark.parametrize("argv", [
    [], ["--socket", "/x/a.sock"], ["--socket=/x/a.sock"], ["--idle-exit", "2.5"],
    ["--idle-exit=-1"], ["--idle-exit", "1e3"], ["--socket", "a", "--idle-exit", "3", "--socket", "b"],
    ["--socket="], ["--sock", "a"], ["--idle", "3"], ["--idle-exit", "-1"], ["--socket=-x"],
])
def test_handler_options_are_read_as_argparse_reads_them(argv):
    import argparse

    from trading.runtime.activation import parse_args

    parser = argparse.ArgumentParser()
    parser.add_argument("--socket")
    parser.add_argument("--idle-exit", type=float)
    want = parser.parse_args(argv)
    got = parse_args("slow", argv)
    assert (got.socket, got.idle_exit) == (want.socket, want.idle_exit)


@pytest.mark.parametrize("argv, message", [
    (["--idle-exit", "x"], "argument --idle-exit: invalid float value: 'x'"),
    (["--socket"], "argument --socket: expected one argument"),
    (["--socket", "--idle-exit", "1"], "argument --socket: expected one argument"),
    (["extra"], "unrecognized arguments: extra"),
    (["--nope", "1"], "unrecognized arguments: --nope 1"),
    (["--idle-exit", "nan"], "argument --idle-exit: not a number: nan"),  # poll would block
    (["--idle-exit=NaN"], "argument --idle-exit: not a number: nan"),
])
def test_bad_handler_options_are_argparse_errors(argv, message, capsys):
    from trading.runtime.activation import parse_args

    with pytest.raises(SystemExit) as exc:
        parse_args("slow", argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: trading-slow [-h]")
    assert err.rstrip().endswith(f"trading-slow: error: {message}")


def test_help_is_argparse_help(capsys):
    from trading.runtime.activation import parse_args

    with pytest.raises(SystemExit) as exc:
        parse_args("slow", ["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--socket SOCKET" in out and "seconds idle before exiting" in out


def test_logging_set_up_before_import_applies_to_whoever_imports_it_first():
    # In a fresh interpreter: setup_logging before logging is loaded; a module that imports
    # logging itself (not through trading.log) then logs with the handlers' format, and a
    # trading.log logger resolves to the same named logger.
    import subprocess
    import sys

    code = ("import sys\n"
            "from trading import log\n"
            "from trading.runtime.activation import setup_logging\n"
            "lg = log.getLogger('trading.somewhere')\n"
            "setup_logging('probe', 'WARNING')\n"
            "assert 'logging' not in sys.modules\n"
            "import logging\n"
            "logging.getLogger('other').warning('plain %s', 1)\n"
            "logging.getLogger('other').info('not shown')\n"
            "lg.error('via proxy %d', 2)\n"
            "assert lg.getEffectiveLevel() == logging.WARNING\n"
            "assert logging.getLogger('trading.somewhere') is lg._logger\n"
            "assert not any(type(f).__name__ == '_SetUpOnImport' for f in sys.meta_path)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"})
    assert out.returncode == 0, out.stderr
    lines = out.stderr.splitlines()
    assert len(lines) == 2, out.stderr
    assert lines[0].endswith("WARNING other: plain 1") and " trading-probe[" in lines[0]
    assert lines[1].endswith("ERROR trading.somewhere: via proxy 2")


def test_a_trading_log_record_names_its_real_caller(caplog):
    # journald's CODE_FILE/CODE_LINE/CODE_FUNC come from the record: the caller, not the proxy.
    from trading import log

    caplog.set_level("INFO", logger="trading.test")
    log.getLogger("trading.test").info("hello %s", "there")
    (record,) = [r for r in caplog.records if r.name == "trading.test"]
    assert record.getMessage() == "hello there" and record.levelname == "INFO"
    assert record.funcName == "test_a_trading_log_record_names_its_real_caller"
    assert record.pathname == __file__


def test_a_journal_handler_that_cannot_load_falls_back_to_stderr(monkeypatch):
    """The set-up runs inside the first `import logging`, maybe mid-request: if the journal
    handler cannot be had there, records go to stderr instead of nowhere."""
    import logging
    import sys

    from trading.runtime import activation

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    monkeypatch.setattr(activation, "_stderr_is_journal", lambda: True)
    monkeypatch.setitem(sys.modules, "systemd.journal", None)  # import raises ImportError
    try:
        activation.setup_logging("market-data", "INFO")  # logging is loaded: applied now
        [handler] = root.handlers
        assert type(handler) is logging.StreamHandler
        assert "trading-market-data" in handler.formatter._fmt
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)


# -- systemd's two protocols, spoken without systemd.daemon ----------------------------------
def test_listen_fds_takes_the_passed_descriptors_only_when_they_are_ours():
    # In a fresh interpreter, where descriptors 3 and 4 are free to stand in for systemd's.
    import subprocess
    import sys

    script = r"""
import os
from trading.runtime.activation import listen_fds
r, w = os.pipe()
os.dup2(r, 3); os.dup2(w, 4)
theirs = {"LISTEN_PID": str(os.getpid() + 1), "LISTEN_FDS": "2"}
print(listen_fds(theirs), sorted(theirs))
print(listen_fds({"LISTEN_PID": "x", "LISTEN_FDS": "2"}))
env = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "2", "LISTEN_FDNAMES": "a"}
print(listen_fds(env), os.get_inheritable(3), os.get_inheritable(4), sorted(env))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    # Another process's: nothing; ours: both, named as passed, close-on-exec, the variables
    # gone (a child must not adopt them again).
    assert out.stdout.splitlines() == ["{} []", "{}", "{3: 'a', 4: 'unknown'} False False []"]


@pytest.mark.parametrize("abstract", [False, True])
def test_sd_notify_sends_one_datagram_to_the_notify_socket(tmp_path, monkeypatch, abstract):
    import os
    import socket

    from trading.runtime import activation

    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if abstract:
        name = f"trading-test-{os.getpid()}-{id(receiver)}"
        receiver.bind("\0" + name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    else:
        receiver.bind(str(tmp_path / "notify"))
        monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    monkeypatch.setattr(activation, "_notify_socket", [])
    receiver.settimeout(5)
    try:
        activation.sd_notify("READY=1\nSTATUS=serving")
        activation.sd_notify("WATCHDOG=1")
        assert receiver.recv(4096) == b"READY=1\nSTATUS=serving"
        assert receiver.recv(4096) == b"WATCHDOG=1"
        monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
        activation.sd_notify("STOPPING=1")  # a manager that is gone: no error, as sd_notify
        if not abstract:  # a relative path is not an address sd_notify takes: nothing sent
            monkeypatch.chdir(tmp_path)
            monkeypatch.setenv("NOTIFY_SOCKET", "notify")
            activation.sd_notify("STATUS=relative")
            receiver.settimeout(0.2)
            with pytest.raises(TimeoutError):
                receiver.recv(4096)
    finally:
        receiver.close()


def test_a_forked_child_reads_its_own_rss_not_the_parents():
    ballast = b"\x01" * BALLAST  # resident in the parent, and in the child until it lets go
    parent = rss_bytes()
    pid = os.fork()
    if pid == 0:  # the child drops the ballast: its own reading must fall, the parent's not
        code = 1
        try:
            del ballast
            import gc

            gc.collect()
            code = 0 if rss_bytes() < parent - BALLAST // 2 else 1
        finally:
            os._exit(code)  # never back into pytest
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert rss_bytes() >= parent - BALLAST // 4
    del ballast
