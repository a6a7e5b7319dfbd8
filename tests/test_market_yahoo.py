"""The Yahoo adapter: one classification and one message for bars and news.

The exceptions are yfinance's and curl_cffi's real ones; nothing touches the network.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from types import SimpleNamespace

import pytest
from curl_cffi.requests.exceptions import ConnectionError as CurlConnectionError
from curl_cffi.requests.exceptions import DNSError, HTTPError, Timeout
from yfinance.exceptions import YFRateLimitError

from trading.errors import UpstreamUnavailable
from trading.market.yahoo import classify, classify_text, message


@pytest.mark.parametrize("exc, kind", [
    (YFRateLimitError(), "rate-limit"),
    (HTTPError("HTTP Error 429", response=SimpleNamespace(status_code=429)), "rate-limit"),
    (RuntimeError("429 Client Error: Too Many Requests for url"), "rate-limit"),
    (DNSError("Could not resolve host: query2.finance.yahoo.com"), "network"),
    (CurlConnectionError("Failed to connect"), "network"),
    (Timeout("Operation timed out"), "network"),
    (HTTPError("HTTP Error 502", response=SimpleNamespace(status_code=502)), "network"),
    (ConnectionResetError(104, "reset"), "network"),
    (TimeoutError("timed out"), "network"),
    (sqlite3.OperationalError("database is locked"), "busy"),
    (sqlite3.OperationalError("no such table: _kv"), None),
    (KeyError("content"), None),
    (TypeError("'NoneType' object is not subscriptable"), None),
])
def test_classify(exc, kind):
    assert classify(exc) == kind


@pytest.mark.parametrize("text, kind", [
    ("YFRateLimitError('Too Many Requests. Rate limited. Try after a while.')", "rate-limit"),
    ("DNSError('Failed to perform, curl: (6) Could not resolve host: x')", "network"),
    ("Failed to perform, curl: (7) Failed to connect to query2.finance.yahoo.com", "network"),
    ("ReadTimeout('timed out')", "network"),
    ("OperationalError('database is locked')", "busy"),
    ("possibly delisted; no price data found", None),
])
def test_classify_text(text, kind):
    assert classify_text(text) == kind


def test_messages_are_one_line_for_people():
    curl = ("DNSError('Failed to perform, curl: (6) Could not resolve host: "
            "query2.finance.yahoo.com. See https://curl.se/libcurl/c/libcurl-errors.html first "
            "for more details.')")
    assert message("network", curl) == ("yahoo unreachable: DNSError: Failed to perform, "
                                        "curl: (6) Could not resolve host: "
                                        "query2.finance.yahoo.com.")
    assert message("network", "") == "yahoo unreachable"
    assert message("rate-limit", "anything", "yahoo news") == (
        "yahoo news rate limit reached (HTTP 429); backing off")


def test_classifying_imports_neither_yfinance_nor_curl():
    code = ("import sys; from trading.market.yahoo import classify, classify_text; "
            "classify(OSError()); classify_text('DNSError(\"x\")'); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('yfinance', 'curl_cffi', 'pandas')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- one backoff policy, in the store ----------------------------------------------------------
NOW = 1_795_000_000.0


@pytest.fixture
def store(tmp_path):
    from trading.runtime.store import Store

    s = Store(tmp_path / "trading.db")
    yield s
    s.close()


def test_rate_limits_in_a_row_double_the_backoff_up_to_the_cap_and_success_clears_it(store):
    from trading.market.breaker import BACKOFF_S, MAX_BACKOFF_S, PAUSE_S, UpstreamState

    state = UpstreamState(store, "news")
    waits = [state.record("x", "rate-limit", "429", NOW) - NOW for _ in range(5)]
    assert waits == [BACKOFF_S, 2 * BACKOFF_S, 4 * BACKOFF_S, MAX_BACKOFF_S, MAX_BACKOFF_S]
    refused = state.refusal("x", NOW + 10, symbol="CBA.AX")
    assert refused.data == {"reason": "rate-limit", "retry_after_s": MAX_BACKOFF_S - 10,
                            "symbol": "CBA.AX"}
    assert state.record("x", "ok", "", NOW) == 0.0 and state.refusal("x", NOW) is None
    assert state.record("x", "rate-limit", "429", NOW) - NOW == BACKOFF_S  # counted afresh
    for outcome in ("network", "error"):
        assert state.record("x", outcome, "", NOW) - NOW == PAUSE_S
    assert state.record("x", "empty", "", NOW) == 0.0


def test_news_and_bars_rate_limits_follow_the_same_policy(store, tmp_path):
    """Yahoo answers 429 three times in a row to bars and to news: the same backoffs, each
    in the store under its own name, and each service's health sees only its own feed."""
    import datetime as dt

    from trading.market.bars import BarCache
    from trading.market.sources import YahooSource
    from trading.market.yahoo import BARS, NEWS
    from trading.news.headlines import News, YahooNews

    clock = [NOW]

    def refused_download(symbols, start, end):
        raise YFRateLimitError()

    class Ticker:
        @property
        def news(self):
            raise YFRateLimitError()

    bars = BarCache(store, clock=lambda: clock[0])
    source = YahooSource(tmp_path, refused_download, sleep=lambda s: None)
    news = News(store, 24.0, clock=lambda: clock[0], sleep=lambda s: None)
    waits: dict[str, list[float]] = {BARS: [], NEWS: []}
    for _ in range(3):
        _, errors = bars.ensure(source, ["CBA.AX"], dt.date(2026, 1, 2))
        assert errors["CBA.AX"].data["reason"] == "rate-limit"
        with pytest.raises(UpstreamUnavailable) as info:
            news.analyze("CBA.AX", YahooNews(ticker=lambda symbol: Ticker()))
        assert info.value.data["reason"] == "rate-limit"
        for name in waits:
            until = store.query("SELECT backoff_until FROM upstream WHERE source = ?",
                                (name,))[0][0]
            waits[name].append(until - clock[0])
        clock[0] += max(w[-1] for w in waits.values())  # past both backoffs
    assert waits[BARS] == waits[NEWS] == [300.0, 600.0, 1200.0]
    assert bars.last_outcome()["source"] == BARS
    assert news.upstream.last()["source"] == NEWS


def test_a_news_backoff_running_at_upgrade_time_is_kept(tmp_path):
    """Migration 0006 moves a running news_backoff row into the upstream table."""
    import sqlite3

    from trading.market.breaker import UpstreamState
    from trading.market.yahoo import NEWS
    from trading.runtime.store import Store, _statements, migrations

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        for number, sql in migrations():
            if number < 6:
                for statement in _statements(open(sql).read()):
                    conn.execute(statement)
        conn.execute("PRAGMA user_version = 5")
        conn.execute("INSERT INTO upstream VALUES ('yahoo', ?, 'ok', '', 0, 0)", (NOW,))
        conn.execute("INSERT INTO news_backoff VALUES ('yahoo', ?, 'rate-limited')",
                     (int(NOW) + 200,))
    store = Store(path)
    try:
        refused = UpstreamState(store, "news").refusal(NEWS, NOW)
        assert refused.data["reason"] == "rate-limit" and refused.data["retry_after_s"] == 200
        assert UpstreamState(store, "bars").last()["source"] == "yahoo"
        assert not store.query("SELECT name FROM sqlite_master WHERE name = 'news_backoff'")
    finally:
        store.close()
