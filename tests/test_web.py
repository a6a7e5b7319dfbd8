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


def test_the_accuracy_page_opens_with_each_predictors_edge_in_words(filled, monkeypatch):
    """Issue 28: the report's first lines, one per predictor, are the page's first lines too
    (as text: a predictor's name is the user's)."""
    from trading.signals import scorecard
    from trading.web import data

    card = {"n": 40, "edge": {"calls": 0, "sessions": 0, "cost_per_side": 0.001,
                              "mean_beyond_drift": None, "ci95": None, "shown": False}}
    lines = scorecard.headlines({"by_predictor": {"trading.signals.rules:predict": {"1": card},
                                                  "<b>mine</b>:P": {"1": card}}})
    answer = {"predictions": {"live": 40}, "outcomes": 40, "sample_left_out": 0,
              "hold_band": {}, "horizons": {}, "by_predictor": {}, "headlines": lines}
    monkeypatch.setattr(data.Dashboard, "accuracy", lambda self: {**answer, "error": None})
    with client_for(filled) as c:
        page = c.get("/accuracy").text
    first = page.index("<h1>Accuracy</h1>")
    assert page.index("trading.signals.rules:predict: no edge shown", first) < page.index(
        "scored outcomes", first)
    assert "&lt;b&gt;mine&lt;/b&gt;:P: no edge shown" in page and "<b>mine</b>" not in page


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


# -- one stream at a time (issue 30) ---------------------------------------------------------
def _replay(cfg, *args: str) -> None:
    """``trading replay tests/data/asx-daily --symbol CBA``: real CBA bars (about A$160), in a
    store whose live calls were made from sample data (about A$15)."""
    from pathlib import Path

    from typer.testing import CliRunner

    from trading.cli.main import app

    folder = Path(__file__).parent / "data" / "asx-daily"
    r = CliRunner().invoke(app, ["replay", str(folder), "--symbol", "CBA", "--start",
                                 "2025-10-01", *args])
    assert r.exit_code == 0, r.output


def _plugged_call(cfg, symbol: str = "CBA.AX") -> None:
    """A live call of CBA by another predictor, after the rules' calls."""
    import json

    from trading.runtime.store import Store
    from trading.signals import ledger

    store = Store(cfg.db_path)
    try:
        [row] = store.query("SELECT prediction, inputs FROM predictions WHERE symbol = ?"
                            " AND origin = 'live' ORDER BY id LIMIT 1", (symbol,))
        p = json.loads(row["prediction"])
        p.update(action="SELL", confidence=0.81, reasons=["momentum turned"],
                 predictor={"name": "momentum:Enhanced"},
                 created_at="2099-01-01T00:00:00+00:00")
        ledger.record(store, [p], {symbol: json.loads(row["inputs"])}, source="sample",
                      run_id="plugged")
    finally:
        store.close()


def test_the_symbol_page_draws_one_stream_from_its_own_candles(filled):
    """After a replay of real CBA from CSV files, the default symbol page is still the live
    sample stream (sample candles, only sample markers and rows), and the replay's stream is
    a link away, drawn over the CSV's own bars."""
    _replay(filled)
    with client_for(filled) as c:
        live = c.get("/api/symbol/CBA.AX").json()
        replay = c.get("/api/symbol/CBA.AX?origin=replay").json()
        page = c.get("/symbol/CBA.AX").text
    assert live["stream"]["origin"] == "live" and live["chart"]["source"] == "sample"
    assert {r["stream"]["source"] for r in live["history"]} == {"sample"}
    assert [m["time"] for m in live["chart"]["markers"]] == [live["latest"]["session"]]
    assert max(b["close"] for b in live["chart"]["bars"]) < 40  # sample CBA: about A$15
    assert replay["stream"]["origin"] == "replay"
    assert replay["chart"]["source"].startswith("csv:")
    assert replay["stream"]["source"] == replay["chart"]["source"]
    assert {(r["stream"]["origin"], r["stream"]["source"]) for r in replay["history"]} == \
        {("replay", "csv")}
    closes = {b["date"]: b["close"] for b in replay["chart"]["bars"]}
    assert min(closes.values()) > 100  # real CBA
    marks = replay["chart"]["markers"]
    assert len(marks) == 65 and all(m["time"] in closes for m in marks)
    assert {m["id"] for m in marks}.isdisjoint(r["id"] for r in live["history"])
    # The page says which stream it shows and links the other.
    assert "live calls of rules from sample data" in page
    assert 'href="/symbol/CBA.AX?origin=replay&amp;source=csv&amp;predictor=' in page
    assert 'data-api="/api/symbol/CBA.AX?origin=live&amp;source=sample&amp;predictor=' in page


def test_the_overview_shows_the_configured_predictors_live_stream_unless_asked(
        monkeypatch, filled):
    _replay(filled)
    _plugged_call(filled)
    with client_for(filled) as c:
        rules = c.get("/api/overview").json()
        replay = c.get("/api/overview?origin=replay").json()
        bad = c.get("/api/overview?origin=tomorrow")
    # The rules' own latest call of CBA, not momentum's later one, nor the replay's. (The
    # configured source is Yahoo, which holds no call: the newest live stream of the
    # configured predictor is shown, and named.)
    assert filled["source"] == "yahoo"
    assert rules["stream"] == {"origin": "live", "source": "sample",
                               "predictor": "trading.signals.rules:predict", "interval": "1d"}
    assert {p["symbol"] for p in rules["calls"]} == {"CBA.AX", "BHP.AX", "NAB.AX"}
    assert {p["predictor_label"] for p in rules["calls"]} == {"rules"}
    assert all(p["stream"]["origin"] == "live" for p in rules["calls"])
    assert {(s["origin"], s["source"], s["label"]) for s in rules["streams"]} == {
        ("live", "sample", "rules"), ("live", "sample", "momentum"),
        ("replay", "csv", "rules")}
    # Asked for the replay: its one symbol, completed to the stream stored (csv, rules).
    assert replay["stream"]["source"] == "csv" and [p["symbol"] for p in replay["calls"]] == \
        ["CBA.AX"]
    cba = replay["calls"][0]
    assert cba["price"] > 100 and cba["session"] == "2026-01-02" and cba["was"]["session"] == \
        "2025-12-31"
    assert cba["change"]["from"] == "2025-12-31"
    assert abs(cba["change"]["value"] - (161.6300048828125 / 160.57000732421875 - 1)) < 1e-3
    assert cba["stale"] is None  # a replay is old data by design
    assert bad.status_code == 400
    # With the plugged predictor configured, the overview is its stream alone: no old rules
    # call of another symbol among its calls.
    monkeypatch.setenv("TRADING_PREDICTOR", "momentum:Enhanced")
    config.reset()
    with client_for(config.get()) as c:
        plugged = c.get("/api/overview").json()
        html = c.get("/").text
    assert [(p["symbol"], p["action"]) for p in plugged["calls"]] == [("CBA.AX", "SELL")]
    assert plugged["calls"][0]["was"] is None  # its first call in this stream
    assert "live calls of momentum from sample data" in html
    assert "momentum&#39;s reasons" in html and "momentum turned" in html


def test_the_overview_says_price_change_was_probability_and_market_once(filled):
    with client_for(filled) as c:
        data = c.get("/api/overview").json()
        html = c.get("/").text
    cba = next(p for p in data["calls"] if p["symbol"] == "CBA.AX")
    # The change on the day: the call's price against the cached close of the session before.
    assert cba["change"]["basis"] == "close" and cba["change"]["from"] < cba["as_of"]
    assert cba["change"]["value"] == pytest.approx(cba["price"] / cba["change"]["previous"] - 1)
    # Two CBA calls in the same session: the earlier is this session's, so "was" is none.
    assert cba["was"] is None and cba["since"] == cba["session"]
    assert cba["probability_text"]["kind"] == "own"
    assert any(w.startswith("RSI ") for w in cba["words"])
    assert data["market"]["context"] and "market" not in " ".join(
        r.split(" ")[0] for r in cba["reasons_own"])
    # The market line is on the page once; each row has its price and the predictor.
    context = data["market"]["context"]
    assert html.count(f"<strong>{context}</strong>") == 1
    assert html.count(f"market {context} (index") == 0
    assert f"{cba['price']:,.2f}" in html and "its own confidence" in html


def test_stream_functions(filled):
    from trading.runtime.store import Store
    from trading.web import streams

    stored = [{"origin": "live", "source": "sample", "predictor": "trading.signals.rules:predict"},
              {"origin": "replay", "source": "csv", "predictor": "momentum:X"}]
    default = {"origin": "live", "source": "yahoo", "predictor": "trading.signals.rules:predict"}
    assert streams.choose({}, default, stored)["source"] == "yahoo"
    assert streams.choose({}, default, stored, fallback={})["source"] == "sample"
    live_rules = {"origin": "live", "predictor": default["predictor"]}
    assert streams.choose({}, default, stored, fallback=live_rules)["source"] == "sample"
    assert streams.choose({}, default, stored[1:], fallback=live_rules)["source"] == "yahoo"
    asked = streams.choose({"origin": "replay"}, default, stored)
    assert (asked["source"], asked["predictor"]) == ("csv", "momentum:X")
    assert streams.choose({"predictor": "momentum"}, default, stored)["origin"] == "replay"
    with pytest.raises(Exception, match="origin"):
        streams.choose({"origin": "x"}, default, stored)
    assert streams.same({"origin": "live", "source": "csv:/d", "predictor": None},
                        {"origin": "live", "source": "csv", "predictor": "a:B"})
    assert not streams.same({"predictor": "rules"}, stored[1])
    # Probability: calibrated when there is one, else the predictor's own, said so.
    assert streams.probability_text({"probability": {"1": 0.61}})["text"] == \
        "61% right after 1 session (calibrated)"
    own = streams.probability_text({"confidence": 0.81, "predictor": {"name": "m:X"}})
    assert own["kind"] == "own" and "m's own confidence" in own["text"]
    words = streams.in_words({"sentiment_score": -0.3}, {"technical": {
        "price_vs_sma20": -2.04, "rsi": 74.2, "macd_histogram": -0.1},
        "volume": {"volume_trend": 0.5}})
    assert words == ["price 2.0% below its 20-day average", "RSI 74: overbought",
                     "momentum (MACD) falling", "news negative (-0.30)",
                     "volume 50% above its 20-day average"]
    assert streams.in_words({}, {}) == ["no news score"]
    assert streams.own_reasons({"market_context": "BULLISH", "reasons": [
        "market BULLISH (index +1%): ...", "BUY: strength"]}) == ["BUY: strength"]
    # The change on the day falls back to the stream's call of the session before, and is
    # nothing without a price or either close.
    store = Store(filled.db_path, readonly=True)
    try:
        p = {"symbol": "ZZZ.AX", "price": 11.0, "as_of": "2026-01-05", "source": "sample"}
        before = {"price": 10.0, "session": "2026-01-02"}
        assert streams.change_on_day(store, p, before) == {
            "value": pytest.approx(0.1), "previous": 10.0, "from": "2026-01-02",
            "basis": "call"}
        assert streams.change_on_day(store, p, None) is None
        assert streams.change_on_day(store, {**p, "price": None}, before) is None
    finally:
        store.close()


def test_people_numbers():
    from trading.web import formatting as f

    assert f.count(3318.0) == "3,318" and f.count(None) == "-" and f.count(True) == "-"
    assert f.price(161.63) == "161.63" and f.price(0.335) == "0.335" and f.price(None) == "-"
    assert f.owner("rules") == "the rules'" and f.owner("momentum") == "momentum's"
    assert f.stream_text({"origin": "replay", "source": "csv:/data/asx", "predictor": "a.b:C"}) \
        == "replayed calls of b from CSV files (/data/asx), daily bars"
    assert f.stream_query({"origin": "live", "source": "unknown", "predictor": "a:B"}) == \
        "origin=live&predictor=a%3AB"


# -- the models page ---------------------------------------------------------------------------
def _registered(active: bool, model_brier: float) -> dict:
    """A registry row as the training service answers it (the shape models.train reports)."""
    scores = {"model": {"accuracy": 0.5263, "auc": 0.4853, "brier": 0.2527, "n": 2480},
              "majority": {"accuracy": 0.5435, "auc": 0.4807, "brier": 0.2485, "n": 2480},
              "rules": {"accuracy": 0.504, "auc": 0.5031, "brier": 0.2606, "n": 2480}}
    return {"version": "20261204T092319Z-701f7a", "created_at": "2026-12-04T09:23:19+00:00",
            "kind": "linear", "symbols": ["ANZ.AX", "CBA.AX"], "features": ["rsi"],
            "horizon": 1, "train_start": "2024-02-19", "train_end": "2026-01-02",
            "source": "csv:/data", "path": "/x.json", "active": active,
            "metrics": {"rows": 3318, "sessions": 474, "folds": 8, "gap": 1,
                        "out_of_sample": scores,
                        "calibration": {"rows": 2170, "calibrated": {"brier": model_brier}},
                        "verdict": {"beats_majority": model_brier < 0.2491,
                                    "why": f"calibrated Brier {model_brier:.4f} against 0.2491"
                                           " for the majority class out of sample"}}}


class _Training:
    def __init__(self, rows):
        self.rows = rows

    def call(self, service, method, params=None, **kw):
        assert (service, method) == ("training", "models")
        return self.rows

    def close(self):
        pass


def test_the_models_page_shows_walk_forward_scores_and_the_activate_state(filled):
    from starlette.testclient import TestClient

    from trading.web.app import create_app
    from trading.web.data import Dashboard

    rows = [_registered(False, 0.2501), _registered(True, 0.2401)]
    rows[1]["version"] = "20261101T000000Z-abcdef"
    board = Dashboard(filled, client=_Training(rows))
    with TestClient(create_app(filled, board)) as c:
        html = c.get("/models").text
        data = c.get("/api/models").json()
    assert "3318.000" not in html and "3,318 rows over 474 sessions, 8 folds" in html
    first, second = data["models"]
    assert [s["name"] for s in first["scores"]] == [
        "model (raw)", "model (calibrated)", "the rules", "majority class"]
    assert first["scores"][1]["brier"] == 0.2501 and not first["activatable"]
    assert "not activated from here" in first["state"] and second["state"].startswith("active")
    for shown in ("0.2527", "0.2501", "0.2606", "0.2485", "52.6%", "2,480", "0.485"):
        assert shown in html, shown
    assert "Does not beat the base rate out of sample: calibrated Brier 0.2501" in html


# -- the services page: times in Sydney, and no run that never happened --------------------
class _Manager:
    """systemctl as a user manager answers it, after an install: the predict timer's stamp
    file written at install (its LastTriggerUSec) and no run; the outcomes job ran once."""

    scope, flag = "user", "--user "
    systemctl_args = ["fake-systemctl"]

    def __init__(self, tmp_path):
        import stat

        script = tmp_path / "fake-systemctl"
        script.write_text(
            "#!/bin/sh\n"
            "case \"$*\" in\n"
            "*list-unit-files*) printf 'trading-outcomes.timer enabled\\n"
            "trading-predict.timer enabled\\n' ;;\n"
            "*Result*) printf 'Id=trading-outcomes.timer\\nUnit=trading-outcomes.service\\n"
            "ActiveState=active\\nSubState=waiting\\n\\nId=trading-predict.timer\\n"
            "Unit=trading-predict.service\\nActiveState=active\\nSubState=waiting\\n' ;;\n"
            "*LastTriggerUSec*) [ \"$TZ\" = UTC ] || exit 9\n"
            "  printf 'Id=trading-outcomes.timer\\nUnit=trading-outcomes.service\\n"
            "NextElapseUSecRealtime=Fri 2026-12-04 06:00:00 UTC\\n"
            "LastTriggerUSec=Thu 2026-12-03 06:00:05 UTC\\n\\n"
            "Id=trading-predict.timer\\nUnit=trading-predict.service\\n"
            "NextElapseUSecRealtime=Thu 2026-12-03 23:00:00 UTC\\n"
            "LastTriggerUSec=Thu 2026-12-03 01:02:03 UTC\\n' ;;\n"
            "*ExecMainStartTimestamp*) printf 'Id=trading-outcomes.service\\n"
            "ExecMainStartTimestamp=@1796364005\\n\\nId=trading-predict.service\\n"
            "ExecMainStartTimestamp=\\n' ;;\n"
            "*) exit 1 ;;\n"
            "esac\n")
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
        self.systemctl_args = [str(script)]

    def systemctl(self, *args, timeout=10.0):
        import subprocess

        return subprocess.run([*self.systemctl_args, *args], capture_output=True, text=True,
                              timeout=timeout)

    def show(self, units, props):
        from trading.ops.systemd import parse_show

        r = self.systemctl("show", *[f"--property={p}" for p in props], "--", *units)
        return {b["Id"]: b for b in parse_show(r.stdout)}

    def unit_files(self, pattern):
        r = self.systemctl("list-unit-files", pattern)
        return [line.split()[0] for line in r.stdout.splitlines()]


def test_the_services_page_shows_sydney_time_and_no_run_that_never_happened(
        monkeypatch, tmp_path, filled):
    from trading.ops import systemd
    from trading.web import data

    assert data.systemd_time("@1796364005") == "2026-12-04T06:00:05+00:00"
    assert data.systemd_time("Thu 2026-12-03 01:02:03 UTC") == "2026-12-03T01:02:03+00:00"
    assert data.systemd_time("n/a") is None and data.systemd_time("") is None
    fake = _Manager(tmp_path)
    monkeypatch.setattr(systemd, "detect", lambda environ=None: (fake, True))
    monkeypatch.setattr(systemd, "service_rows", lambda m, names: [])
    with client_for(filled) as c:
        timers = {t["timer"]: t for t in c.get("/api/services").json()["timers"]}
        html = c.get("/services").text
    predict, outcomes = timers["trading-predict.timer"], timers["trading-outcomes.timer"]
    assert predict["last_run"] is None and predict["stamp_only"] == "2026-12-03T01:02:03+00:00"
    assert outcomes["last_run"] == "2026-12-04T06:00:05+00:00" and not outcomes["stamp_only"]
    # Sydney time (AEDT, UTC+11) under the footer that says so; never the UTC text.
    # outcomes ran at 17:00 (and runs next at 17:00), predict runs next at 10:00
    assert "2026-12-04 17:00" in html and "2026-12-04 10:00" in html
    assert "never" in html and "2026-12-03 12:02" in html and "is not a run" in html
    assert "UTC" not in html
    # The predict job's own record of a run counts as one.
    from trading.runtime.store import Store

    store = Store(filled.db_path)
    with store.transaction() as db:
        db.execute("INSERT INTO alert_runs (run_id, kind, predictor, created_at)"
                   " VALUES ('r1', 'job', NULL, '2026-12-03T23:00:41+00:00')")
    store.close()
    with client_for(filled) as c:
        timers = {t["timer"]: t for t in c.get("/api/services").json()["timers"]}
    assert timers["trading-predict.timer"]["last_run"] == "2026-12-03T23:00:41+00:00"


@pytest.mark.systemd
@pytest.mark.slow
def test_a_persistent_timers_stamp_is_not_a_run_on_a_real_manager(user_manager, monkeypatch):
    """Against a real systemd user manager: a Persistent= timer restarted after its first
    start (what an install or a reboot does) reports the stamp file's time as
    LastTriggerUSec, though its service never ran; the page says "never" until the
    service's own start, then that start."""
    from trading.ops.systemd import Manager
    from trading.web import data

    units = user_manager.home / ".config/systemd/user"
    units.mkdir(parents=True, exist_ok=True)
    (units / "trading-demo.timer").write_text("[Timer]\nOnCalendar=2099-01-01\n"
                                              "Persistent=true\n")
    (units / "trading-demo.service").write_text("[Service]\nType=oneshot\n"
                                                "ExecStart=/bin/true\n")
    for k in ("HOME", "XDG_RUNTIME_DIR"):
        monkeypatch.setenv(k, user_manager.env[k])
    user_manager.systemctl("daemon-reload")
    user_manager.systemctl("start", "trading-demo.timer")
    time.sleep(1.1)  # the stamp's second, and the restart's, differ
    user_manager.systemctl("restart", "trading-demo.timer")
    manager = Manager("user", units)
    [row] = data.timer_rows(manager, {})
    assert user_manager.show("trading-demo.timer", "LastTriggerUSec")["LastTriggerUSec"]
    assert row["last_run"] is None and row["stamp_only"] is not None
    from trading.ops import systemd

    [status] = systemd.timer_rows(manager)  # what `trading status` prints: no run either
    assert status.last_run is None and status.stamp_only
    assert row["next_run"] == "2099-01-01T00:00:00+00:00"
    user_manager.systemctl("start", "trading-demo.service")
    [row] = data.timer_rows(manager, {})
    from datetime import datetime, timezone

    ran = datetime.fromisoformat(row["last_run"])
    assert abs((datetime.now(timezone.utc) - ran).total_seconds()) < 60
    assert row["stamp_only"] is None
    [status] = systemd.timer_rows(manager)
    assert status.last_run and status.stamp_only is None
