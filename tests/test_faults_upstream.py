"""Yahoo down or rate-limiting, seen by a live market-data handler over its socket.

The one fake is Yahoo: tests/support/fake_yahoo puts a ``yfinance`` first on the handler's
``PYTHONPATH`` that serves the shared ASX CSVs in ``yf.download``'s shape, or fails the way the
real one does, and logs every call. The cache is filled while Yahoo is up, that handler exits,
the cache's freshness is expired in the store (time passing), Yahoo goes away, and a new
handler is asked. What must hold:

- every request is answered with the cached data, flagged ``stale`` (no crash, same process);
- no hot retry loop: the upstream attempts are counted, and bounded whatever the number of
  requests: a rate limit is asked once and then honoured, also by a fresh process; a network
  failure costs one call (and its one retry), not one per request.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from support.wire import rpc
from trading.market.breaker import BACKOFF_S

FAKE_YAHOO = Path(__file__).resolve().parent / "support" / "fake_yahoo"


@pytest.fixture
def yahoo(activate, tmp_path, asx_daily, monkeypatch):
    """(start_handler, set_mode, attempts, db_path)."""
    mode, log = tmp_path / "yahoo-mode", tmp_path / "yahoo.log"
    log.touch()
    mode.write_text(f"ok {asx_daily}")
    monkeypatch.setenv("PYTHONPATH", str(FAKE_YAHOO))
    monkeypatch.setenv("TRADING_TEST_YAHOO_MODE", str(mode))
    monkeypatch.setenv("TRADING_TEST_YAHOO_LOG", str(log))
    monkeypatch.setenv("TRADING_SOURCE", "yahoo")

    def start():
        # A socket file left by the previous handler would look ready before the new one is.
        (Path(os.environ["TRADING_RUNTIME_DIR"]) / "market-data.sock").unlink(missing_ok=True)
        return activate("market-data", idle_exit=60)

    def attempts(kind: str | None = None) -> int:
        lines = log.read_text().splitlines()
        return sum(1 for line in lines if kind is None or line.split()[1] == kind)

    from trading import config

    config.reset()
    return start, mode.write_text, attempts, config.get().db_path


def expire(db: Path) -> None:
    """Time passes: every cached series is due for a refresh."""
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE bar_series SET fresh_until = 0")


def fill_then_expire(start, set_mode, attempts, db, asx_daily):
    h = start()
    answer = rpc(h.path, "get_market_data", {"symbol": "CBA"}, timeout=30)
    assert "result" in answer, (answer, h.stop())
    first = answer["result"]
    assert first["stale"] is False and first["as_of"] == "2026-01-02"
    assert first["source"] == "yahoo" and attempts("ok") == 1
    # The handler exits (idle); time passes; the next one finds every series due.
    h.stop()
    expire(db)
    h = start()
    pid = rpc(h.path, "health_check", timeout=30)["result"]["pid"]
    return h, first, pid


def many(path: Path, n: int, clients: int = 4) -> list[dict]:
    """``n`` get_market_data calls from ``clients`` concurrent clients."""
    answers: list[dict] = []
    lock = threading.Lock()

    def client(k: int) -> None:
        for _ in range(k):
            a = rpc(path, "get_market_data", {"symbol": "CBA"}, timeout=30)
            with lock:
                answers.append(a)

    threads = [threading.Thread(target=client, args=(n // clients,)) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return answers


def assert_stale_answers(answers: list[dict], first: dict, n: int) -> None:
    assert len(answers) == n
    for a in answers:
        r = a["result"]
        assert r["stale"] is True and r["as_of"] == first["as_of"]
        assert r["technical"] == first["technical"]


def test_rate_limited_yahoo_is_asked_once_and_stale_data_is_served(yahoo, asx_daily):
    start, set_mode, attempts, db = yahoo
    h, first, pid = fill_then_expire(start, set_mode, attempts, db, asx_daily)
    set_mode("rate-limit")
    answers = many(h.path, 40)
    assert_stale_answers(answers, first, 40)
    assert attempts("rate-limit") == 1
    health = rpc(h.path, "health_check", timeout=30)["result"]
    assert health["pid"] == pid
    assert health["last_fetch"]["outcome"] == "rate-limit"
    assert health["last_fetch"]["backoff_until"] - time.time() == pytest.approx(BACKOFF_S, abs=30)
    # A fresh process honours the backoff stored in the upstream table: it does not ask.
    h.stop()
    h2 = start()
    assert_stale_answers(many(h2.path, 8), first, 8)
    assert attempts("rate-limit") == 1
    assert rpc(h2.path, "health_check", timeout=30)["result"]["pid"] != pid


# The network cases wait out the adapter's one retry (2 s) before the stale answers.
@pytest.mark.parametrize("failure", [pytest.param("network", marks=pytest.mark.slow),
                                     pytest.param("raise-network", marks=pytest.mark.slow),
                                     "empty"])
def test_yahoo_unreachable_is_not_asked_again_per_request(yahoo, asx_daily, failure):
    """``network``: yfinance swallows the transport failure into an empty frame and logs it,
    which is what it really does offline (one retry inside the adapter); ``raise-network``:
    the transport error is raised; ``empty``: nothing for any ticker, nothing logged."""
    start, set_mode, attempts, db = yahoo
    h, first, pid = fill_then_expire(start, set_mode, attempts, db, asx_daily)
    set_mode(failure)
    began = time.monotonic()
    answers = many(h.path, 40)
    took = time.monotonic() - began
    assert_stale_answers(answers, first, 40)
    tried = attempts(failure)
    print(f"\n{failure}: 40 requests answered stale in {took:.1f}s with {tried} upstream calls")
    # One fetch (the network cases retry once inside the adapter), then a pause.
    network = failure != "empty"
    assert tried <= (2 if network else 1), tried
    assert took < 10, f"40 stale answers took {took:.1f}s"
    health = rpc(h.path, "health_check", timeout=30)["result"]
    assert health["pid"] == pid
    assert health["last_fetch"]["outcome"] == ("network" if network else "empty")
    log = h.stop()
    assert "Traceback" not in log, log


@pytest.mark.slow  # the adapter's one retry (2 s) too
def test_yahoo_offline_with_nothing_cached_says_unreachable(yahoo):
    """Offline with an empty cache: the one-line error says the network, not "no data"."""
    start, set_mode, attempts, db = yahoo
    set_mode("network")
    h = start()
    error = rpc(h.path, "get_market_data", {"symbol": "CBA"}, timeout=30)["error"]
    assert error["data"]["reason"] == "network", error
    assert error["message"].startswith("yahoo unreachable: "), error
    assert "Could not resolve host" in error["message"] and "\n" not in error["message"]
    assert attempts("network") == 2  # the adapter's one retry
    log = h.stop()
    assert "Traceback" not in log, log
