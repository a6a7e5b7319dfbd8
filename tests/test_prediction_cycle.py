"""The full cycle through real sockets: prediction, market-data and sentiment each run as their
own process under ``systemd-socket-activate`` (systemd's tool: the handler is exec'd on the
first connection with the socket passed as fd 3), and the prediction service must reach its
peers through their sockets (``TRADING_IN_PROCESS=never``), one bulk call each.
"""

from __future__ import annotations

import pytest

from trading import config
from trading.runtime.client import Client
from trading.errors import Unavailable
from trading.runtime.store import Store

SEVEN = ["CBA.AX", "ANZ.AX", "NAB.AX", "WBC.AX", "MQG.AX", "COL.AX", "BHP.AX"]


@pytest.fixture
def client():
    c = Client(config.get(), in_process="never", timeout=60)
    yield c
    c.close()


def start(activate, *services):
    return {s: activate(s, idle_exit=30, TRADING_IN_PROCESS="never") for s in services}


def requests_served(client, service) -> int:
    # The runtime counts a request once it is answered, so health_check excludes itself.
    return client.call(service, "health_check")["requests_served"]


def test_a_cycle_through_the_three_sockets(activate, client):
    procs = start(activate, "prediction", "market-data", "sentiment")
    out = client.call("prediction", "generate_predictions",
                      {"symbols": ["cba", "anz", "nab", "wbc", "mqg", "col", "bhp", "NOPE!"],
                       "source": "sample"})
    assert list(out["results"]) == SEVEN
    assert out["errors"]["NOPE!"]["problem"] == "invalid-symbol"
    for p in out["results"].values():
        assert p["action"] in ("BUY", "SELL", "HOLD")
        assert p["components"]["sentiment"] is not None, p["reasons"]
        assert p["components"]["technical"] is not None
        assert p["price"] > 0
        assert p["model_version"] is None  # nothing trained in this state directory
    # One bulk call each, not a round trip per symbol.
    assert requests_served(client, "market-data") == 1
    assert requests_served(client, "sentiment") == 1
    # Three processes, not one: each handler runs in its own.
    pids = {s: client.call(s, "health_check")["pid"] for s in procs}
    assert len(set(pids.values())) == 3
    assert pids == {s: a.proc.pid for s, a in procs.items()}

    # Stored, with the inputs, and readable back through the socket.
    store = Store(config.get().db_path)
    rows = store.query("SELECT symbol, inputs FROM predictions ORDER BY id")
    assert [r["symbol"] for r in rows] == SEVEN
    assert '"sentiment":{' in rows[0]["inputs"]
    latest = client.call("prediction", "get_prediction", {"symbol": "CBA"})
    assert latest["id"] == out["results"]["CBA.AX"]["id"]
    assert len(client.call("prediction", "history", {"limit": 100})) == 7
    assert len(client.call("prediction", "events", {"type": "prediction"})) == 7
    store.close()


def test_sentiment_down_costs_confidence_not_the_prediction(activate, client):
    start(activate, "prediction", "market-data")  # no sentiment socket, no in-process fallback
    out = client.call("prediction", "generate_predictions",
                      {"symbols": ["CBA", "BHP"], "source": "sample"})
    assert list(out["results"]) == ["CBA.AX", "BHP.AX"]
    for p in out["results"].values():
        assert p["components"]["sentiment"] is None
        assert p["reasons"][0].startswith("sentiment unavailable")
        assert any("sentiment missing" in r for r in p["reasons"])


def test_market_data_down_is_one_clear_error(activate, client):
    start(activate, "prediction")
    with pytest.raises(Unavailable, match="market-data is not available"):
        client.call("prediction", "generate_predictions", {"symbols": ["CBA"], "source": "sample"})
    # The service survived the failed request.
    assert client.call("prediction", "health_check")["status"] == "ok"
