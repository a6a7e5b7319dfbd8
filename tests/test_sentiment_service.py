"""The sentiment service as a real process under socket activation, and its CLI."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from trading import config
from trading.runtime.client import Client
from trading.errors import InvalidParams, InvalidSymbol


def test_served_over_a_socket(activate):
    a = activate("sentiment", idle_exit=30)
    c = Client(config.get(), in_process="never")
    try:
        health = c.call("sentiment", "health_check")
        assert health["service"] == "sentiment" and health["lexicons_loaded"] is False
        r = c.call("sentiment", "analyze_sentiment", {"symbol": "cba", "source": "sample"})
        assert r["symbol"] == "CBA.AX" and r["headline_count"] >= 3
        scores = c.call("sentiment", "score_text",
                        {"texts": ["CBA shares slump after profit falls short of forecasts"]})
        assert scores["scores"][0] < 0
        with pytest.raises(InvalidSymbol):
            c.call("sentiment", "analyze_sentiment", {"symbol": "../../etc", "source": "sample"})
        with pytest.raises(InvalidParams):
            c.call("sentiment", "score_text", {"texts": "not a list"})
        bulk = c.call("sentiment", "analyze_bulk",
                      {"symbols": ["BHP", "NAB", "bad/one"], "source": "sample"})
        assert set(bulk["results"]) == {"BHP.AX", "NAB.AX"} and set(bulk["errors"]) == {"bad/one"}
        # The service survived every bad request.
        assert c.call("sentiment", "health_check")["lexicons_loaded"] is True
    finally:
        c.close()
        a.stop()


def test_cli_json_and_table():
    from trading.cli.main import app

    out = CliRunner().invoke(app, ["sentiment", "cba", "BHP.AX", "--source", "sample", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert set(data["results"]) == {"CBA.AX", "BHP.AX"} and data["errors"] == {}
    table = CliRunner().invoke(app, ["sentiment", "nab", "-s", "sample", "-n", "2"])
    assert table.exit_code == 0 and "NAB.AX" in table.stdout and "upgraded" in table.stdout


def test_cli_bad_symbol_is_one_line_and_exit_2():
    from trading.cli.main import app

    out = CliRunner().invoke(app, ["sentiment", "../x", "--source", "sample"])
    assert out.exit_code == 2
    assert "invalid symbol" in out.stderr and "Traceback" not in out.output
    assert len(out.stderr.strip().splitlines()) <= 2  # the in-process note and the error


def test_cli_unknown_source_fails_cleanly():
    from trading.cli.main import main

    assert main(["sentiment", "cba", "--source", "ftp://x"]) == 2
