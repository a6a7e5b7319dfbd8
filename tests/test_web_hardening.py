"""The dashboard against the attacks of issue 27, on real loopback sockets: the web process
runs as systemd starts it (``trading-web`` adopting a passed listening socket, LISTEN_FDS),
with the descriptor limit systemd gives a service (1024), and the figures each test prints
are the ones docs/dashboard.md quotes.

- a large body (300 MB declared, or chunked without a length) is refused before it is read:
  the process's peak memory barely moves;
- slowloris (a thousand connections dribbling header bytes) leaves room for a real request,
  closes the slow ones after the request timeout, never runs out of descriptors and writes a
  handful of log lines, not hundreds of thousands;
- the login: no open redirect, a signed session cookie (never the token), the Host check
  with a token too, and guesses budgeted to a handful a second;
- actions are refused before their body is read.
"""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import wait_for

from trading import config

TOKEN = "s3cret-token"
NOFILE = 1024  # systemd's default soft limit for a service (DefaultLimitNOFILE=1024:524288)

# Starts the dashboard the way systemd does: the listening socket as descriptor 3, LISTEN_FDS
# and LISTEN_PID set, then the console script's own entry point.
LAUNCH = """
import os, resource, sys
fd, nofile = int(sys.argv[1]), int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
if fd != 3:
    os.dup2(fd, 3)
    os.close(fd)
os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()))
sys.argv[1:] = ["--idle-exit", "0"]
from trading.web.__main__ import run
sys.exit(run())
"""


class Dashboard:
    """``trading-web`` in a child process on a loopback port of its own."""

    def __init__(self, nofile: int = NOFILE) -> None:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        self.port = listener.getsockname()[1]
        self.proc = subprocess.Popen(
            [sys.executable, "-c", LAUNCH, str(listener.fileno()), str(nofile)],
            pass_fds=[listener.fileno()], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True)
        listener.close()  # the child has it, as systemd's copy would be
        self.pid = self.proc.pid
        assert request(self.port, "GET", "/login")[0] == 200  # started, and warm

    def status(self, field: str) -> int:
        """A figure from /proc/PID/status, in bytes for memory (VmRSS, VmHWM: the peak)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise KeyError(field)

    def descriptors(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def stop(self) -> str:
        """Stop the process; its log (stderr)."""
        self.proc.terminate()
        try:
            _, err = self.proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err


@pytest.fixture
def dashboard(monkeypatch):
    """A function that starts a :class:`Dashboard` (``token=`` sets web.token); each is
    stopped at the end, and its log is in ``.log`` afterwards."""
    started: list[Dashboard] = []

    def start(token: str = "", nofile: int = NOFILE) -> Dashboard:
        if token:
            monkeypatch.setenv("TRADING_WEB_TOKEN", token)
        d = Dashboard(nofile)
        started.append(d)
        return d

    yield start
    for d in started:
        if d.proc.poll() is None:
            d.stop()


# -- raw HTTP -------------------------------------------------------------------------------
def read_status(s: socket.socket) -> int | str:
    """The status code of the answer on ``s``, or ``"closed"`` / ``"reset"``."""
    data = b""
    try:
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    except ConnectionResetError:
        if not data:
            return "reset"
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else "closed"


def request(port: int, method: str, path: str, body: bytes = b"", headers: str = "",
            timeout: float = 10.0) -> tuple[int | str, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                  f"Content-Length: {len(body)}\r\n{headers}\r\n".encode() + body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return (int(head.split(b" ", 2)[1]) if head else "closed"), rest


def send_huge(port: int, total: int, *, chunked: bool, wait_first: float = 0.0) -> int | str:
    """POST /login with a ``total``-byte body, sent as fast as the server takes it, stopping
    when an answer arrives or the server stops reading; the answer's status."""
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}"
    block = b"token=" + b"x" * (64 * 1024 - 6)
    piece = f"{len(block):x}\r\n".encode() + block + b"\r\n" if chunked else block
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\n{framing}\r\n"
                  "Content-Type: application/x-www-form-urlencoded\r\n\r\n".encode())
        sent = 0
        s.settimeout(2.0)
        try:
            select.select([s], [], [], wait_first)
            while sent < total and not select.select([s], [], [], 0)[0]:
                s.sendall(piece)
                sent += len(block)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass  # refused: the server closed, or stopped reading
        s.settimeout(10)
        return read_status(s)


# -- a large body -----------------------------------------------------------------------------
@pytest.mark.slow
def test_a_300_mb_post_is_refused_before_it_is_read(dashboard):
    d = dashboard(token=TOKEN)
    assert request(d.port, "POST", "/login", b"token=wrong")[0] == 401
    peak = d.status("VmHWM")
    # Declared: answered from the headers alone, as curl's `Expect: 100-continue` waits for.
    assert send_huge(d.port, 300 << 20, chunked=False, wait_first=1.0) == 413
    # Declared and sent regardless; and chunked, with no length to refuse beforehand.
    assert send_huge(d.port, 300 << 20, chunked=False) in (413, "reset")
    assert send_huge(d.port, 300 << 20, chunked=True) in (413, "reset")
    growth = d.status("VmHWM") - peak
    print(f"\npeak RSS {peak / 2**20:.1f} MiB before three 300 MB POSTs, "
          f"+{growth / 2**20:.2f} MiB after")
    assert growth < 4 << 20
    assert request(d.port, "GET", "/login")[0] == 200  # still serving


@pytest.mark.slow
def test_a_chunked_body_is_cut_off_at_the_limit_and_answered(dashboard):
    """Sent at the pace of a client that looks for an answer before each piece: the 413
    arrives (the body past the limit is never read)."""
    d = dashboard(token=TOKEN)
    with socket.create_connection(("127.0.0.1", d.port), timeout=10) as s:
        s.sendall(b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
                  b"Content-Type: application/x-www-form-urlencoded\r\n\r\n")
        piece = b"1000\r\n" + b"x" * 0x1000 + b"\r\n"
        for _ in range(64):
            if select.select([s], [], [], 0.05)[0]:
                break
            s.sendall(piece)
        assert read_status(s) == 413


def asgi(app, method: str, path: str, *, body_size: int = 0, headers: list | None = None,
         host: bytes = b"127.0.0.1:8787", client=("127.0.0.1", 5000)) -> tuple[int, int, dict]:
    """One request straight through ASGI, its body (``body_size`` bytes) offered in 4 KiB
    pieces without a length, as a chunked upload comes: (the status, how many body bytes
    the app pulled, the answer's headers). ``client=None`` is a Unix socket's peer."""
    import asyncio

    pulled = 0
    start: list[dict] = []

    async def receive():
        nonlocal pulled
        piece = min(4096, body_size - pulled)
        pulled += piece
        return {"type": "http.request", "body": b"x" * piece, "more_body": pulled < body_size}

    async def send(message):
        if message["type"] == "http.response.start":
            start.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "client": client,
             "server": ("127.0.0.1", 8787),
             "headers": [(b"host", host),
                         (b"content-type", b"application/x-www-form-urlencoded"),
                         *(headers or [])]}
    asyncio.run(app(scope, receive, send))
    answer = {k.decode(): v.decode() for k, v in start[0]["headers"]}
    return start[0]["status"], pulled, answer


def test_bodies_are_pulled_only_up_to_the_limit_and_only_when_allowed(monkeypatch):
    from trading.web.app import create_app
    from trading.web.guard import FORM_LIMIT

    huge = 300 << 20
    app = create_app(config.get())
    status, pulled, headers = asgi(app, "POST", "/login", body_size=huge)
    assert status == 413 and pulled <= FORM_LIMIT + 4096 and headers["connection"] == "close"
    # Actions off: refused before a byte of the body is read.
    assert asgi(app, "POST", "/actions/predict", body_size=huge)[:2] == (403, 0)
    monkeypatch.setenv("TRADING_WEB_TOKEN", TOKEN)
    monkeypatch.setenv("TRADING_WEB_ALLOW_ACTIONS", "true")
    config.reset()
    app = create_app(config.get())
    # With a token: no session, no bearer, no read.
    assert asgi(app, "POST", "/api/actions/predict", body_size=huge)[:2] == (401, 0)
    # A declared length over the limit: refused from the header.
    assert asgi(app, "POST", "/login", body_size=huge,
                headers=[(b"content-length", str(huge).encode())])[:2] == (413, 0)


# -- slowloris --------------------------------------------------------------------------------
class Dribblers:
    """``n`` connections that each send the start of a request, then one more header byte
    every ``every`` seconds (from one thread), as a slowloris does."""

    def __init__(self, port: int, n: int, every: float = 0.5) -> None:
        self.opened_at: dict[socket.socket, float] = {}
        self.closed_at: dict[socket.socket, float] = {}
        for _ in range(n):
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
            except OSError:
                continue
            self.opened_at[s] = time.monotonic()
            s.setblocking(False)
            try:
                s.send(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            except OSError:
                self.closed_at[s] = time.monotonic()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._dribble, args=(every,), daemon=True)
        self.thread.start()

    def _dribble(self, every: float) -> None:
        while not self.stop.wait(every):
            for s in list(self.opened_at):
                if s not in self.closed_at and not self._alive(s):
                    self.closed_at[s] = time.monotonic()

    @staticmethod
    def _alive(s: socket.socket) -> bool:
        """Still open: nothing from the server (an EOF, a reset, a 503), and one more byte
        sent."""
        try:
            s.recv(4096)
            return False  # an EOF, a 503, or a reset
        except BlockingIOError:
            pass
        except OSError:
            return False
        try:
            s.send(b"a")
        except OSError:
            return False
        return True

    def open_now(self) -> list[socket.socket]:
        return [s for s in self.opened_at if s not in self.closed_at]

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        for s in self.opened_at:
            s.close()


@pytest.mark.slow
def test_slowloris_leaves_room_for_a_real_request_and_ends(dashboard):
    from trading.web.limits import REQUEST_TIMEOUT_S, connection_cap

    d = dashboard()
    slow = Dribblers(d.port, 1100)
    try:
        latencies = []
        for _ in range(5):
            t0 = time.monotonic()
            assert request(d.port, "GET", "/api/events", timeout=10)[0] == 200
            latencies.append(time.monotonic() - t0)
            time.sleep(0.2)
        fds, rss = d.descriptors(), d.status("VmRSS")
        kept = slow.open_now()
        # The slow ones that kept their place are closed once their time is up, dribbling
        # as they are; none much earlier.
        wait_for(lambda: not slow.open_now(), REQUEST_TIMEOUT_S + 5,
                 "every slow connection closed")
        lasted = [slow.closed_at[s] - slow.opened_at[s] for s in kept]
    finally:
        slow.close()
    log = d.stop()
    print(f"\n1100 dribbling connections: a GET answered in {max(latencies) * 1e3:.0f} ms at "
          f"most; {len(kept)} slow ones kept, closed {min(lasted):.1f}-{max(lasted):.1f} s "
          f"after they opened; {fds} descriptors of {NOFILE}; RSS {rss / 2**20:.1f} MiB; "
          f"{len(log.splitlines())} log lines")
    assert max(latencies) < 2.0
    assert fds < NOFILE - 100
    assert 0 < len(kept) <= connection_cap(NOFILE)
    assert REQUEST_TIMEOUT_S - 1 < min(lasted) and max(lasted) < REQUEST_TIMEOUT_S + 2
    assert "out of system resource" not in log
    assert len(log.splitlines()) < 20, log[-3000:]


def _stream_state(s: socket.socket, seen: dict) -> str:
    """``open`` (its `retry:` line came, its end did not), ``ended`` (the last chunk, a
    refusal, or the connection closed) or ``pending`` (no answer yet)."""
    s.setblocking(False)
    try:
        while chunk := s.recv(65536):
            seen[s] = seen.get(s, b"") + chunk
        return "ended"  # closed
    except BlockingIOError:
        pass
    except OSError:
        return "ended"
    data = seen.get(s, b"")
    if not data:
        return "pending"
    return "open" if data.startswith(b"HTTP/1.1 200") and b"retry:" in data \
        and b"\r\n0\r\n\r\n" not in data else "ended"


@pytest.mark.slow
def test_event_streams_past_the_cap_give_way_and_pages_still_answer(dashboard):
    """Issue 27: an event stream is an answer that never ends, so the connection cap could
    not give its place to a newcomer: a script opening as many streams as the cap left every
    page a 503. Now the oldest streams end past MAX_STREAMS, their connections go back to
    idle, and a page is answered."""
    from trading.web.app import MAX_STREAMS
    from trading.web.limits import connection_cap

    d = dashboard()
    socks, seen = [], {}
    for _ in range(connection_cap(NOFILE) + 20):
        try:
            s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
            s.sendall(b"GET /events/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        except OSError:
            continue
        socks.append(s)
    try:
        def settled():  # every stream asked answered or closed, the oldest given way
            states = [_stream_state(s, seen) for s in socks]
            return "pending" not in states and states.count("open") <= MAX_STREAMS

        wait_for(settled, 15, f"every stream answered, at most {MAX_STREAMS} open")
        t0 = time.monotonic()
        status, _ = request(d.port, "GET", "/api/events")
        took = time.monotonic() - t0
        open_now = [_stream_state(s, seen) for s in socks].count("open")
    finally:
        for s in socks:
            s.close()
    print(f"\n{len(socks)} event streams asked: {open_now} open; a page in {took * 1e3:.0f} ms")
    assert status == 200 and took < 2.0
    assert open_now == MAX_STREAMS


@pytest.mark.slow
def test_a_client_that_never_reads_its_answers_is_cut_off(dashboard):
    from trading.web.limits import REQUEST_TIMEOUT_S

    d = dashboard()
    baseline = d.descriptors()
    script = "/static/vendor/lightweight-charts.standalone.production.js"  # about 200 KB
    with socket.create_connection(("127.0.0.1", d.port), timeout=5) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        for _ in range(200):  # pipelined: the answers pile up, never read
            s.sendall(f"GET {script} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        t0 = time.monotonic()
        wait_for(lambda: d.descriptors() > baseline, 5, "the connection accepted")
        # Still connected, reading nothing: the server lets go of it (its descriptor and
        # the answers it had buffered) once writing has been stuck for the timeout.
        wait_for(lambda: d.descriptors() == baseline, REQUEST_TIMEOUT_S + 5,
                 "the server to let go of the connection")
        print(f"\na client reading nothing let go of after {time.monotonic() - t0:.1f} s")
        assert time.monotonic() - t0 > REQUEST_TIMEOUT_S - 1


# -- the login --------------------------------------------------------------------------------
@pytest.fixture
def token_cfg(monkeypatch):
    monkeypatch.setenv("TRADING_WEB_TOKEN", TOKEN)
    monkeypatch.setenv("TRADING_WEB_HOSTS", "testserver")
    config.reset()
    return config.get()


def client_for(cfg, **kw):
    from starlette.testclient import TestClient

    from trading.web.app import create_app

    return TestClient(create_app(cfg), **kw)


@pytest.mark.parametrize("target", [
    "/\\evil.example", "//evil.example", "/\t/evil.example", "/\n/evil.example",
    "https://evil.example/", "javascript:alert(1)", "\\\\evil.example", "/\\/evil.example",
    "evil.example", ""])
def test_the_login_never_redirects_off_the_site(token_cfg, target):
    with client_for(token_cfg) as c:
        r = c.post("/login", data={"token": TOKEN, "next": target}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/"
        page = c.get("/login", params={"next": target}).text
        assert 'name="next" value="/"' in page


def test_the_login_keeps_a_path_on_this_site(token_cfg):
    with client_for(token_cfg) as c:
        r = c.post("/login", data={"token": TOKEN, "next": "/history?symbol=CBA.AX"},
                   follow_redirects=False)
        assert r.headers["location"] == "/history?symbol=CBA.AX"


def test_the_session_cookie_is_signed_not_the_token(token_cfg, monkeypatch):
    from trading.web.guard import COOKIE

    with client_for(token_cfg) as c:
        r = c.post("/login", data={"token": TOKEN}, follow_redirects=False)
        cookie = r.headers["set-cookie"]
        value = c.cookies[COOKIE]
        assert TOKEN not in cookie and TOKEN not in value
        attributes = cookie.lower()
        assert "httponly" in attributes and "samesite=strict" in attributes
        assert "secure" not in attributes  # plain http: a Secure cookie would never come back
        assert c.get("/api/overview").status_code == 200
        # A forged or altered value, or the token itself as the cookie, is no session.
        for forged in (TOKEN, value[:-1] + ("0" if value[-1] != "0" else "1"),
                       "9999999999.00.00", ""):
            c.cookies.set(COOKIE, forged)
            assert c.get("/api/overview").status_code == 401, forged
        # Behind a proxy that says https, the cookie is Secure.
        r = c.post("/login", data={"token": TOKEN}, headers={"X-Forwarded-Proto": "https"},
                   follow_redirects=False)
        assert "; secure" in r.headers["set-cookie"].lower()
    # A new token ends every session.
    monkeypatch.setenv("TRADING_WEB_TOKEN", "another-token")
    config.reset()
    with client_for(config.get()) as c:
        c.cookies.set(COOKIE, value)
        assert c.get("/api/overview").status_code == 401


def test_a_session_expires():
    from trading.web.guard import Sessions

    now = [1_000_000.0]
    sessions = Sessions(TOKEN, lifetime=60, clock=lambda: now[0])
    value = sessions.issue()
    assert sessions.valid(value)
    now[0] += 61
    assert not sessions.valid(value)


def test_the_host_check_stays_on_with_a_token(token_cfg, monkeypatch):
    from trading.web.app import create_app

    app = create_app(token_cfg)
    assert asgi(app, "GET", "/", host=b"evil.example")[0] == 421
    assert asgi(app, "GET", "/", host=b"evil.example:8787")[0] == 421
    # A Unix socket's peer too: an SSH tunnel to it carries the browser's Host unchanged.
    assert asgi(app, "GET", "/", host=b"evil.example", client=None)[0] == 421
    # Addresses cannot be rebound; loopback names and web.hosts are served.
    for host in (b"192.0.2.7:8787", b"[2001:db8::7]:8787", b"localhost:8787", b"testserver"):
        assert asgi(app, "GET", "/", host=host)[0] == 303, host  # on to the login
    monkeypatch.setenv("TRADING_WEB_HOSTS", "*")  # configured off
    config.reset()
    assert asgi(create_app(config.get()), "GET", "/", host=b"evil.example")[0] == 303


def test_login_guesses_are_budgeted_per_client(token_cfg):
    from trading.web.guard import LOGIN_PER_CLIENT

    burst = LOGIN_PER_CLIENT[0]
    with client_for(token_cfg, client=("192.0.2.1", 5000)) as guesser:
        codes = [guesser.post("/login", data={"token": f"guess{i}"}).status_code
                 for i in range(50)]
        assert codes.count(401) <= burst + 1 and codes.count(429) >= 50 - burst - 1
        r = guesser.post("/login", data={"token": TOKEN})
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert "too many attempts" in r.text
    with client_for(token_cfg, client=("192.0.2.2", 5000)) as user:  # another client
        assert user.post("/login", data={"token": TOKEN}).status_code == 200


def test_the_login_budget_caps_guessers_with_many_addresses():
    from trading.web.guard import Budget

    now = [0.0]
    budget = Budget(per_client=(5, 1.0), overall=(20, 5.0), clock=lambda: now[0])
    allowed = 0
    for second in range(10):  # a new address for every guess, 100 guesses a second
        now[0] = float(second)
        allowed += sum(budget.take(f"10.0.{second}.{i}") == 0.0 for i in range(100))
    assert allowed <= 20 + 5 * 9
    assert len(budget.buckets) <= budget.max_clients


@pytest.mark.slow
def test_login_guesses_per_second_over_real_sockets(dashboard):
    d = dashboard(token=TOKEN)
    codes: list = []
    deadline = time.monotonic() + 3.0

    def guess() -> None:
        while time.monotonic() < deadline:
            codes.append(request(d.port, "POST", "/login", b"token=wrong",
                                 "Content-Type: application/x-www-form-urlencoded\r\n")[0])

    threads = [threading.Thread(target=guess) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    compared = codes.count(401)
    print(f"\n{len(codes)} login attempts in 3 s from 8 connections at once: {compared} "
          f"compared ({compared / 3:.1f} a second), {codes.count(429)} told to wait")
    assert compared <= 5 + 3 + 1 and codes.count(429) > 0


# -- logging ------------------------------------------------------------------------------------
def test_a_flood_of_log_lines_is_one_line_per_interval():
    import logging

    from trading.web.limits import OncePerInterval

    now = [0.0]
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    log = logging.getLogger("test.flood")
    log.propagate = False
    log.addHandler(Keep())
    log.addFilter(OncePerInterval(every=10, clock=lambda: now[0]))
    for i in range(100_000):
        now[0] = i * 0.0003  # 100,000 in 30 s
        log.error("socket.accept() out of system resource\nsocket: <fd=%d>", 6)
    log.warning("something else")
    assert len(records) == 4, records
    assert records[1].startswith("socket.accept() out of system resource")
    assert "more like this in the last 10 s" in records[1]
