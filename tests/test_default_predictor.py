"""The shipped default makes no directional call (issue 28, docs/choosing-the-predictor.md).

No candidate showed an edge after costs, so the built-in rules withhold their BUY and SELL
unless ``directional_calls`` is set: the call is HOLD, the rules' lean is kept as
``rules_call`` and said in the reasons, and the probability stays the calibrated one of a
HOLD. Every other test runs with ``TRADING_DIRECTIONAL_CALLS=true`` (tests/conftest.py); these
remove it, so they see what a trader who installs the product sees.
"""

from __future__ import annotations

import http.server
import json
import socket
import threading

import pytest
from typer.testing import CliRunner

from trading import config
from trading.cli.main import app
from trading.signals import rules

SESSION_TIME = "2026-11-27T11:00"  # a Friday in the session: the job's gate opens
THRESHOLDS = ("TRADING_THRESHOLD_BEARISH", "TRADING_THRESHOLD_BULLISH",
              "TRADING_THRESHOLD_NEUTRAL")


@pytest.fixture
def shipped(monkeypatch):
    """The configuration a trader gets: no directional calls."""
    monkeypatch.delenv("TRADING_DIRECTIONAL_CALLS", raising=False)
    config.reset()


def bullish_market(cfg) -> dict:
    return {"symbol": "CBA.AX", "as_of": "2026-01-02", "source": "csv", "stale": False,
            "age_s": 60.0,
            "technical": {"current_price": 100.0, "rsi": 40.0, "macd_histogram": 0.5,
                          "price_vs_sma20": 2.0, "tech_score": 0.95, "market_price": 100.0},
            "volume": {"volume_trend": 0.3, "price_volume_correlation": 0.5,
                       "volume_quality_score": 0.95},
            "market_context": {"context": "BULLISH", "trend_pct": 3.0,
                               "confidence_multiplier": cfg["multiplier.bullish"],
                               "buy_threshold": cfg["threshold.bullish"], "fallback": False}}


def mirrored(market: dict) -> dict:
    m = json.loads(json.dumps(market))
    m["technical"]["tech_score"] = 0.05
    m["volume"]["volume_quality_score"] = 0.05
    m["market_context"].update(context="BEARISH", trend_pct=-3.0,
                               confidence_multiplier=1.0, buy_threshold=0.8)
    return m


def test_the_default_withholds_buy_and_sell_and_says_what_the_rules_lean_to():
    shipped_cfg = config.load(environ={})
    on = config.load(environ={"TRADING_DIRECTIONAL_CALLS": "true"})
    assert shipped_cfg["directional_calls"] is False
    for market, call in ((bullish_market(shipped_cfg), "BUY"),
                         (mirrored(bullish_market(shipped_cfg)), "SELL")):
        assert rules.decide(market, None, None, shipped_cfg)["action"] == call
        made = rules.predict(symbol="CBA.AX", market=market, sentiment=None, model=None,
                             config=shipped_cfg)
        assert made["action"] == "HOLD" and made["rules_call"] == call
        assert any(r.startswith(f"HOLD: no directional call; the rules lean {call} (strength")
                   for r in made["reasons"])
        assert rules.NO_EDGE in made["reasons"]
        assert not any(r.startswith(call) for r in made["reasons"])
        # The score and strength are the rules' own: the calibration of a HOLD reads them.
        assert made["score"] == rules.decide(market, None, None, shipped_cfg)["score"]
        acted = rules.predict(symbol="CBA.AX", market=market, sentiment=None, model=None,
                              config=on)
        assert acted["action"] == call and "rules_call" not in acted


def test_a_hold_is_left_as_the_rules_made_it():
    cfg = config.load(environ={})
    market = bullish_market(cfg)
    market["technical"]["tech_score"] = 0.5
    market["volume"]["volume_quality_score"] = 0.5
    made = rules.predict(symbol="CBA.AX", market=market, sentiment=None, model=None, config=cfg)
    assert made["action"] == "HOLD" and "rules_call" not in made
    assert not any("no directional call" in r for r in made["reasons"])


class _Hook:
    def __init__(self) -> None:
        self.posts: list[dict] = []
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hook.posts.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def hook():
    h = _Hook()
    yield h
    h.server.shutdown()
    h.server.server_close()


def _run(monkeypatch, *args: str, **env: str):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    config.reset()
    return CliRunner().invoke(app, list(args))


def test_a_trader_who_installs_it_gets_no_buy_or_sell_and_no_alert(shipped, monkeypatch, hook):
    """On the sample data, thresholds at 0.4 make the rules call CBA and NAB BUYs and COL,
    BHP and MQG SELLs; the shipped default sends none of them, and says why on screen. The
    same run with directional_calls on does call and alert (so this test can fail)."""
    for name in THRESHOLDS:
        monkeypatch.setenv(name, "0.4")
    env = {"TRADING_SOURCE": "sample", "TRADING_NEWS_SOURCE": "sample",
           "TRADING_NOW": SESSION_TIME, "TRADING_NOTIFY_URLS": f"json://127.0.0.1:{hook.port}/x"}
    shown = _run(monkeypatch, "predict", "--json", **env)
    assert shown.exit_code == 0, shown.output
    results = json.loads(shown.stdout)["results"]
    assert results and {p["action"] for p in results.values()} == {"HOLD"}
    leaning = {s: p["rules_call"] for s, p in results.items() if "rules_call" in p}
    assert "BUY" in leaning.values() and "SELL" in leaning.values(), results
    job = _run(monkeypatch, "job", "predict", **env)
    assert job.exit_code == 0, job.output
    assert hook.posts == [], hook.posts
    text = _run(monkeypatch, "predict", **env).stdout
    assert "HOLD: no directional call; the rules lean SELL" in text, text

    acted = _run(monkeypatch, "job", "predict", TRADING_DIRECTIONAL_CALLS="true", **env)
    assert acted.exit_code == 0, acted.output
    titles = [p["title"] for p in hook.posts]
    assert any(t.startswith(("BUY ", "SELL ")) for t in titles), (titles, acted.output)
