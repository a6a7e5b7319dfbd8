"""Hostile parameters are InvalidParams (-32602) through the real JSON-RPC dispatcher, never an
internal error (-32603), and never logged whole (issue 14)."""

from __future__ import annotations

import json
import logging

import pytest

from trading.handlers.market_data import MarketData
from trading.handlers.prediction import Prediction
from trading.handlers.sentiment import Sentiment

LONG_PATH = "/" + "a" * 400_000

CASES = [
    (MarketData, "get_market_data", {"symbol": "CBA", "source": "csv:" + LONG_PATH}),
    (MarketData, "bulk_fetch", {"symbols": ["CBA"], "source": "csv:" + LONG_PATH}),
    (MarketData, "get_market_data", {"symbol": "CBA", "source": "csv:/tmp/a" + "/b" * 2100}),
    (MarketData, "get_market_data", {"symbol": "CBA", "source": "csv:/tmp/\0"}),
    (MarketData, "get_market_data", {"symbol": "CBA", "source": "csv:/" + "a" * 300}),
    (Sentiment, "analyze_sentiment", {"symbol": "CBA", "source": "jsonl:" + LONG_PATH}),
    (Prediction, "generate_predictions", {"symbols": ["CBA"], "source": "csv:" + LONG_PATH}),
    (Prediction, "events", {"after_id": 2**63}),
    (Prediction, "events", {"after_id": 10**30}),
]


@pytest.mark.parametrize("service, method, params", CASES,
                         ids=[f"{c[0].name}.{c[1]}-{i}" for i, c in enumerate(CASES)])
def test_hostile_parameters_are_invalid_params_not_internal_errors(service, method, params,
                                                                   caplog):
    caplog.set_level(logging.DEBUG)
    svc = service()
    try:
        line = json.dumps({"jsonrpc": "2.0", "id": 7, "method": method, "params": params})
        answer = json.loads(svc.dispatcher().handle_line(line.encode()))
    finally:
        svc.close()
    assert answer["id"] == 7
    assert answer["error"]["code"] == -32602, answer["error"]
    assert len(answer["error"]["message"]) < 300
    longest = max((len(r.getMessage()) for r in caplog.records), default=0)
    assert longest < 5000, "a hostile parameter was logged whole"


def test_the_largest_event_id_is_still_accepted():
    svc = Prediction()
    try:
        assert svc.events(after_id=2**63 - 1) == []
    finally:
        svc.close()
