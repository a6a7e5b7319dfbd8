"""The dashboard (issue 18) without a browser: every page and its JSON against a real store,
escaping, the security headers, the token and the actions, what the page path imports, and
the idle exit that loses no request (real sockets, real uvicorn, a stand-in for systemd's
backlog). The browser tests are tests/test_web_browser.py; systemd's, test_web_systemd.py.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time

import pytest

from support import webstore
from trading import config

PAGES = ["/", "/symbol/CBA.AX", "/history", "/accuracy", "/models", "/services", "/events"]
APIS = ["/api/overview", "/api/symbol/CBA.AX", "/api/history", "/api/accuracy", "/api/models",
        "/api/services", "/api/events"]


@pytest.fixture
def cfg(monkeypatch):
    monkeypatch.setenv("TRADING_WEB_HOSTS", "testserver")
    config.reset()
    return config.get()


@pytest.fixture
def filled(cfg):
    webstore.fill(cfg)
    return cfg


def client_for(cfg, **kw):
    """The app as its entry point builds it: the handlers' registry for the in-process
    fallback (no socket is installed here) and the services page."""
    from starlette.testclient import TestClient

    from trading.handlers import SOCKET_SERVICES, load
    from trading.web.app import create_app

    return TestClient(create_app(cfg, registry=load, services=list(SOCKET_SERVICES)), **kw)


@pytest.mark.parametrize("path", PAGES)
def test_every_page_renders_from_the_store_with_the_security_headers(filled, path):
    with client_for(filled) as c:
        r = c.get(path)
    assert r.status_code == 200, r.text
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "<script>" not in r.text and "<img" not in r.text  # the hostile markup is text
    # No inline script: every <script> has a src, from this origin.
    for tag in r.text.split("<script")[1:]:
        assert tag.lstrip().startswith('src="/static/'), tag[:80]


@pytest.mark.parametrize("path", APIS)
def test_every_page_has_its_json(filled, path):
    with client_for(filled) as c:
        r = c.get(path)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json()


def test_the_pages_show_the_calls_outcomes_and_hostile_text_as_text(filled):
    with client_for(filled) as c:
        overview = c.get("/api/overview").json()
        assert {p["symbol"] for p in overview["calls"]} == {"CBA.AX", "BHP.AX", "NAB.AX"}
        cba = c.get("/symbol/CBA.AX").text
        history = c.get("/api/history?symbol=BHP&limit=5").json()
        symbol = c.get("/api/symbol/cba").json()
        accuracy = c.get("/api/accuracy").json()
    # The hostile headline and reason are there, escaped; its javascript: URL is not a link.
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in cba
    assert "&lt;b&gt;Evil&lt;/b&gt; Wire" in cba
    assert "javascript:" not in cba
    assert history["predictions"][0]["outcomes"]["1"]["forward_return"] == 0.012
    assert symbol["symbol"] == "CBA.AX" and symbol["chart"]["source"] == "sample"
    assert len(symbol["chart"]["bars"]) > 200 and symbol["chart"]["error"] is None
    assert set(symbol["chart"]["indicators"]) >= {"sma20", "rsi14", "macd_hist"}
    assert [m["time"] for m in symbol["chart"]["markers"]] == [symbol["latest"]["session"]]
    # The fixture's predictions were made from sample data: the report leaves them out (and
    # says how many), as `trading report` does.
    assert accuracy["outcomes"] == 0 and accuracy["sample_left_out"] == 4


def test_bad_input_is_a_clear_escaped_error(filled):
    with client_for(filled) as c:
        bad = c.get("/symbol/%3Cscript%3Ealert(1)")
        assert bad.status_code == 400 and "<script>alert" not in bad.text
        assert "&lt;script&gt;" in bad.text
        assert c.get("/api/history?limit=0").json()["error"]["problem"] == "invalid-params"
        assert c.get("/api/nope").status_code == 404


def test_an_empty_install_shows_empty_pages_not_errors(cfg):
    with client_for(cfg) as c:
        assert "No predictions yet" in c.get("/").text
        assert c.get("/api/events").json() == {"events": []}
        assert not cfg.db_path.exists()  # a read-only reader creates nothing


def test_unknown_host_names_are_refused_without_a_token(filled):
    with client_for(filled, base_url="http://evil.example") as c:
        assert c.get("/").status_code == 421
    with client_for(filled, base_url="http://127.0.0.1:8787") as c:
        assert c.get("/").status_code == 200


def test_with_a_token_every_page_needs_it(monkeypatch, filled):
    monkeypatch.setenv("TRADING_WEB_TOKEN", "s3cret")
    monkeypatch.setenv("TRADING_WEB_HOSTS", "dashboard.example")
    config.reset()
    cfg = config.get()
    with client_for(cfg, base_url="http://dashboard.example") as c:
        r = c.get("/history", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/login?next=/history"
        assert c.get("/api/overview").status_code == 401
        assert c.get("/static/app.css").status_code == 200
        assert c.get("/api/overview", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert c.post("/login", data={"token": "wrong"}).status_code == 401
        r = c.post("/login", data={"token": "s3cret", "next": "//evil.example/"},
                   follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/"
        assert "httponly" in r.headers["set-cookie"].lower()
        assert c.get("/history").status_code == 200  # the session cookie now


def test_actions_are_off_by_default_and_need_the_token_in_the_request(monkeypatch, filled):
    with client_for(filled) as c:
        r = c.post("/api/actions/activate", data={"version": ""})
        assert r.status_code == 403 and "web.allow_actions" in r.json()["error"]["message"]
    monkeypatch.setenv("TRADING_WEB_ALLOW_ACTIONS", "true")
    config.reset()
    with client_for(config.get()) as c:  # allowed, but no token configured
        assert "web.token" in c.post("/api/actions/activate").json()["error"]["message"]
    monkeypatch.setenv("TRADING_WEB_TOKEN", "s3cret")
    monkeypatch.setenv("TRADING_SOURCE", "sample")  # offline: the configured source is Yahoo
    monkeypatch.setenv("TRADING_NEWS_SOURCE", "sample")
    config.reset()
    with client_for(config.get()) as c:
        assert c.post("/login", data={"token": "s3cret"}).status_code == 200
        # The session cookie alone (what another site's form would carry) is not enough.
        assert c.post("/api/actions/predict", data={"symbols": "CBA"}).status_code == 403
        r = c.post("/api/actions/predict", data={"symbols": "CBA", "token": "s3cret"})
        assert r.status_code == 200, r.text
        assert list(r.json()["result"]["results"]) == ["CBA.AX"]
        assert "Run a prediction" in c.get("/").text


def test_the_accuracy_page_is_the_prediction_services_and_says_when_it_cannot_answer(filled):
    from starlette.testclient import TestClient

    from trading.web.app import create_app

    with client_for(filled) as c:  # in-process: the prediction handler's own scorecard
        answer = c.get("/api/accuracy").json()
        assert answer["error"] is None and answer["sample_left_out"] == 4
    with TestClient(create_app(filled)) as c:  # no socket and no in-process fallback
        page = c.get("/accuracy")
        assert page.status_code == 200
        assert "Prediction service unavailable" in page.text
        assert c.get("/api/accuracy").json()["error"]


def test_the_page_path_imports_no_pandas_or_matplotlib(filled):
    """In a fresh interpreter: import the app, serve the store-backed pages and their JSON,
    and look at sys.modules (the symbol page's bars come from market-data and the accuracy
    page's scorecard from prediction, other processes when installed; in-process here they
    would be those services' imports, not the pages')."""
    code = (
        "import sys\n"
        "from starlette.testclient import TestClient\n"
        "from trading import config\n"
        "from trading.web.app import create_app\n"
        "c = TestClient(create_app(config.get()))\n"
        "for p in ('/', '/history', '/events', '/api/overview', '/api/history',"
        " '/api/events'):\n"
        "    assert c.get(p).status_code == 200, p\n"
        "print(sorted(m for m in ('pandas', 'matplotlib', 'numpy', 'sklearn', 'yfinance')"
        " if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_importing_the_server_module_costs_no_http_stack():
    code = ("import sys, trading.web, trading.web.serve, trading.cli.main; "
            "print(sorted(m for m in ('uvicorn', 'starlette', 'jinja2') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr


# -- the listener --------------------------------------------------------------------------
def test_a_non_loopback_listener_needs_a_token():
    from trading.errors import ConfigError
    from trading.web.serve import bind, check_exposure, is_loopback

    for addr, loop in (("127.0.0.1:0", True), ("0.0.0.0:0", False)):
        s = bind(addr)
        try:
            assert is_loopback(s) is loop
            if not loop:
                with pytest.raises(ConfigError, match="web.token"):
                    check_exposure(s, "")
            check_exposure(s, "t")
        finally:
            s.close()


def test_trading_web_refuses_a_wildcard_address_without_a_token():
    from typer.testing import CliRunner

    from trading.cli.main import app

    r = CliRunner().invoke(app, ["web", "--listen", "0.0.0.0:0"])
    assert r.exit_code == 2


# -- idle exit ------------------------------------------------------------------------------
def _get(port: int, path: str = "/api/events", timeout: float = 20.0) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                  .encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1]) if data else 0


@pytest.mark.slow
def test_idle_exit_loses_no_request_across_many_instances(filled):
    """A stand-in for systemd: it keeps its own copy of the listening socket and starts a new
    server instance whenever a connection waits and none runs. Requests spaced around the
    idle timeout, each on a fresh connection, keep landing during exits; every one must be
    answered, by the instance that accepted it or by the next."""
    from trading.web.app import create_app
    from trading.web.serve import serve

    held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    held.bind(("127.0.0.1", 0))
    held.listen(64)
    port = held.getsockname()[1]
    app = create_app(filled)
    instances, done = [], threading.Event()

    def supervisor():
        import select

        while not done.is_set():
            running = [t for t in instances if t.is_alive()]
            if not running and select.select([held], [], [], 0.01)[0]:
                t = threading.Thread(target=serve, args=(app, held.dup()),
                                     kwargs={"idle_exit": 0.25}, daemon=True)
                t.start()
                instances.append(t)
            time.sleep(0.005)

    sup = threading.Thread(target=supervisor, daemon=True)
    sup.start()
    codes = []
    try:
        import random

        rnd = random.Random(18)
        for _ in range(40):
            codes.append(_get(port))
            time.sleep(rnd.uniform(0.2, 0.45))
    finally:
        done.set()
        sup.join(5)
        for t in instances:
            t.join(10)
        held.close()
    assert codes == [200] * len(codes)
    assert len(instances) >= 5, "the idle exit never happened between requests"


def test_an_open_connection_keeps_the_server_and_idle_ends_it(filled):
    from trading.web.app import create_app
    from trading.web.serve import bind, serve

    sock = bind("127.0.0.1:0")
    port = sock.getsockname()[1]
    t = threading.Thread(target=serve, args=(create_app(filled), sock),
                         kwargs={"idle_exit": 0.3}, daemon=True)
    t.start()
    with socket.create_connection(("127.0.0.1", port)) as held:
        time.sleep(1.0)
        assert t.is_alive()  # a connection is open (e.g. a live events page)
        held.sendall(b"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        assert held.recv(12).startswith(b"HTTP/1.1 200")
    t.join(5)
    assert not t.is_alive()
