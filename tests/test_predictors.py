"""Bring your own predictor (issue 15): loaded from the predictors folder beside the real
configuration file, called with the monolith's contract or the native one, and never able to
break the service.

Predictors are written into ``<config dir>/predictors/`` (the default ``predictors_dir``) and
named in ``config.toml`` (``TRADING_CONFIG``, private to each test): the path a trader takes.
The commands run through the real CLI (handlers in-process); the hang runs in a real
socket-activated prediction process, whose health must stay good.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import textwrap
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from trading import __version__, config
from trading.cli.main import app
from trading.runtime.client import Client
from trading.runtime.store import Store
from trading.signals import ledger, predictors

from conftest import REPO

SAMPLE = ["--source", "sample"]
SEVEN = ["CBA.AX", "ANZ.AX", "NAB.AX", "WBC.AX", "MQG.AX", "COL.AX", "BHP.AX"]
EXAMPLE = REPO / "examples" / "predictors" / "momentum.py"
MOMENTUM = "momentum:EnhancedMarketAwarePredictor"


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def predictors_dir() -> Path:
    d = Path(os.environ["TRADING_CONFIG"]).parent / "predictors"
    d.mkdir(exist_ok=True)
    return d


def configure(predictor: str, **settings) -> None:
    lines = [f'predictor = "{predictor}"'] + [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
    Path(os.environ["TRADING_CONFIG"]).write_text("\n".join(lines) + "\n")
    config.reset()


def write(module: str, code: str) -> Path:
    path = predictors_dir() / f"{module}.py"
    path.write_text(textwrap.dedent(code))
    return path


def stderr_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if "in-process" not in line]


# -- the example, through the real configuration path -----------------------------------------

def test_the_example_monolith_class_makes_the_predictions_shown_stored_and_published():
    shutil.copy(EXAMPLE, predictors_dir())
    configure(MOMENTUM)
    out = run("predict", *SAMPLE, "--json")
    assert out.exit_code == 0, out.output
    body = json.loads(out.stdout)
    digest = hashlib.sha256(EXAMPLE.read_bytes()).hexdigest()
    assert body["predictor"] == {"name": MOMENTUM, "form": "monolith", "version": "1.0",
                                 "file": str(predictors_dir() / "momentum.py"),
                                 "sha256": digest}
    assert list(body["results"]) == SEVEN and not body["errors"]
    for p in body["results"].values():
        assert p["action"] in ("BUY", "SELL", "HOLD") and 0 <= p["confidence"] <= 1
        assert p["predictor"]["sha256"] == digest
        assert p["reasons"] and " market" in p["reasons"][0]  # the example's own reason

    # What is stored is what the class, unchanged, says on the stored inputs.
    import importlib.util

    spec = importlib.util.spec_from_file_location("momentum_direct", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    direct = module.EnhancedMarketAwarePredictor()
    cfg = config.get()
    stored = ledger.history(Store(cfg.db_path), inputs=True)
    assert len(stored) == 7
    for p in stored:
        args = predictors.monolith_args(p["inputs"]["market"], p["inputs"]["sentiment"], cfg)
        again = direct.calculate_confidence(symbol=p["symbol"], **args)
        assert (p["action"], p["confidence"]) == (again["action"], again["confidence"])
        assert p["predictor"]["name"] == MOMENTUM

    table = run("history")
    assert table.exit_code == 0 and " momentum" in table.stdout, table.stdout
    events = [json.loads(line) for line in run("events", "--json", "-n", "50").stdout.splitlines()]
    assert all(e["payload"]["predictor"]["name"] == MOMENTUM for e in events)
    assert "by momentum" in run("events").stdout
    shown = run("predict", "CBA", *SAMPLE)
    assert "EnhancedMarketAwarePredictor" in shown.stdout


def test_the_rules_are_the_default_predictor_loaded_the_same_way():
    body = json.loads(run("predict", "CBA", *SAMPLE, "--json").stdout)
    rules = Path(predictors.__file__).with_name("rules.py")
    assert body["predictor"] == {"name": "trading.signals.rules:predict", "form": "native",
                                 "file": str(rules), "version": __version__,
                                 "sha256": hashlib.sha256(rules.read_bytes()).hexdigest()}
    p = body["results"]["CBA.AX"]
    assert p["components"]["technical"] is not None and p["predictor"] == body["predictor"]


# -- the monolith's argument shapes -----------------------------------------------------------

RECORDER = """
    calls = []

    class Recorder:
        def calculate_confidence(self, symbol, tech_data, news_data, volume_data, market_data):
            calls.append({"symbol": symbol, "tech_data": dict(tech_data),
                          "news_data": dict(news_data), "volume_data": dict(volume_data),
                          "market_data": dict(market_data)})
            tech_data["rsi"] = -1.0          # a predictor scribbling on its inputs
            market_data.clear()
            return {"action": "HOLD", "confidence": 0.5}
"""


def test_the_monolith_gets_its_exact_field_names_beside_ours_as_copies():
    write("recorder", RECORDER)
    configure("recorder:Recorder")
    out = run("predict", "CBA", "BHP", *SAMPLE, "--json")
    assert out.exit_code == 0, out.output
    import recorder  # the very module the service loaded (in-process)

    assert [c["symbol"] for c in recorder.calls] == ["CBA.AX", "BHP.AX"]
    call = recorder.calls[0]
    # The names the monolith reads, verbatim from issue 15.
    for name in ("current_price", "rsi", "macd_histogram", "price_vs_sma20", "tech_score",
                 "market_price"):
        assert isinstance(call["tech_data"][name], float), name
    for name in ("volume_trend", "price_volume_correlation", "volume_quality_score"):
        assert isinstance(call["volume_data"][name], float), name
    for name in ("context", "trend_pct", "confidence_multiplier", "buy_threshold"):
        assert name in call["market_data"], name
    assert call["news_data"]["symbol"] == "CBA.AX" and call["news_data"]["headlines"]
    # The scribbles changed the predictor's copies only.
    stored = ledger.history(Store(config.get().db_path), inputs=True)
    assert all(p["inputs"]["market"]["technical"]["rsi"] > 0 for p in stored)
    assert all(p["inputs"]["market"]["market_context"]["context"] for p in stored)


def test_missing_context_and_sentiment_reach_the_monolith_as_neutral_values():
    cfg = config.get()
    args = predictors.monolith_args({"symbol": "CBA.AX", "technical": {"rsi": 40.0}}, None, cfg)
    assert args["tech_data"] == {"current_price": None, "rsi": 40.0, "macd_histogram": None,
                                 "price_vs_sma20": None, "tech_score": None,
                                 "market_price": None}
    assert args["market_data"] == {"context": "NEUTRAL", "trend_pct": None,
                                   "confidence_multiplier": 1.0, "buy_threshold": 0.7,
                                   "fallback": True}
    assert args["news_data"]["missing"] is True and args["news_data"]["score"] == 0.0
    assert args["volume_data"] == {"volume_trend": None, "price_volume_correlation": None,
                                   "volume_quality_score": None}


# -- the native form ----------------------------------------------------------------------------

def test_a_native_function_and_a_factory_are_predictors_too():
    write("native", """
        def predict(*, symbol, market, sentiment, model, config):
            up = market["technical"]["tech_score"] > 0.5
            return {"action": "BUY" if up else "SELL", "confidence": 0.8,
                    "reasons": [f"tech {market['technical']['tech_score']}"],
                    "weights_seen": config["weights.technical"]}

        class Picky:
            def predict(self, *, symbol, market, sentiment, model, config):
                return {"action": "hold", "confidence": 0.25, "reason": "never trades"}

        def make():
            return Picky()
    """)
    configure("native:predict")
    body = json.loads(run("predict", "CBA", *SAMPLE, "--json").stdout)
    p = body["results"]["CBA.AX"]
    assert body["predictor"]["form"] == "native" and p["action"] in ("BUY", "SELL")
    assert p["weights_seen"] == 0.4 and p["reasons"][0].startswith("tech ")
    configure("native:make")
    p = json.loads(run("predict", "CBA", *SAMPLE, "--json").stdout)["results"]["CBA.AX"]
    assert (p["action"], p["confidence"], p["reasons"]) == ("HOLD", 0.25, ["never trades"])


# -- bad predictors never break the service ----------------------------------------------------

def test_a_predictor_that_raises_costs_that_symbol_only():
    write("fussy", """
        class Fussy:
            def calculate_confidence(self, symbol, tech_data, news_data, volume_data,
                                     market_data):
                if symbol == "BHP.AX":
                    raise ZeroDivisionError("no edge on miners")
                return {"action": "HOLD", "confidence": 0.5}
    """)
    configure("fussy:Fussy")
    out = run("predict", "CBA", "BHP", "ANZ", *SAMPLE, "--json")
    assert out.exit_code == 0, out.output
    body = json.loads(out.stdout)
    assert list(body["results"]) == ["CBA.AX", "ANZ.AX"]
    err = body["errors"]["BHP.AX"]
    assert err["problem"] == "predictor-failed" and err["code"] == -32011
    assert "ZeroDivisionError: no edge on miners" in err["message"]
    assert "fussy:Fussy" in err["message"]
    table = run("predict", "CBA", "BHP", *SAMPLE)
    assert table.exit_code == 0
    assert stderr_lines(table) == [f"trading: BHP.AX: {err['message']}"]


ANSWERS = {
    "CBA.AX": None,
    "ANZ.AX": {"confidence": 0.5},
    "NAB.AX": {"action": "STRONG_BUY", "confidence": 0.5},
    "WBC.AX": {"action": "BUY", "confidence": 1.5},
    "MQG.AX": {"action": "BUY", "confidence": "0.7"},
    "COL.AX": {"action": "SELL", "confidence": math.nan},
    "BHP.AX": {"action": " buy", "confidence": 0.9},
}


def test_answers_outside_the_contract_are_invalid_prediction_entries():
    write("sloppy", f"""
        import math
        nan = math.nan
        ANSWERS = {ANSWERS!r}

        def predict(*, symbol, market, sentiment, model, config):
            return ANSWERS[symbol]
    """)
    configure("sloppy:predict")
    body = json.loads(run("predict", *SAMPLE, "--json").stdout)
    assert list(body["results"]) == ["BHP.AX"]
    assert body["results"]["BHP.AX"]["action"] == "BUY"
    assert sorted(body["errors"]) == sorted(SEVEN[:-1])
    for symbol, err in body["errors"].items():
        assert err["problem"] == "invalid-prediction", (symbol, err)
    assert "not a dict" in body["errors"]["CBA.AX"]["message"]
    assert "'STRONG_BUY'" in body["errors"]["NAB.AX"]["message"]
    assert "1.5" in body["errors"]["WBC.AX"]["message"]
    assert "from 0 to 1" in body["errors"]["MQG.AX"]["message"]


def test_every_symbol_failing_is_exit_1_with_a_line_each():
    write("always_wrong", """
        def predict(**inputs):
            return {"action": "MAYBE", "confidence": 0.5}
    """)
    configure("always_wrong:predict")
    out = run("predict", "CBA", "BHP", *SAMPLE)
    assert out.exit_code == 1
    assert [line.split(":")[1].strip() for line in stderr_lines(out)] == ["CBA.AX", "BHP.AX"]


def test_an_import_error_is_one_clear_line_from_predict_status_and_config_show():
    path = write("broken", "import numpy_but_misspelt\n")
    configure("broken:Predictor")
    out = run("predict", "CBA", *SAMPLE)
    assert out.exit_code == 1 and "Traceback" not in out.output
    [line] = stderr_lines(out)
    assert "broken:Predictor" in line and str(path) in line
    assert "ModuleNotFoundError: No module named 'numpy_but_misspelt'" in line

    shown = run("config", "show")
    [line] = stderr_lines(shown)
    assert "broken:Predictor" in line and "ModuleNotFoundError" in line and str(path) in line
    info = json.loads(run("config", "show", "--json").stdout)["predictor"]
    assert info["ok"] is False and "numpy_but_misspelt" in info["error"]

    status = run("status")
    assert status.exit_code == 1
    [line] = stderr_lines(status)
    assert "broken:Predictor" in line and "ModuleNotFoundError" in line

    # Fixed in place: the next command imports the new file (nothing half-imported is kept).
    path.write_text("def Predictor():\n    return lambda **kw: {'action': 'HOLD', "
                    "'confidence': 0.1}\n")
    out = run("predict", "CBA", *SAMPLE, "--json")
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["results"]["CBA.AX"]["confidence"] == 0.1
    shown = run("config", "show")
    assert not stderr_lines(shown) and "broken:Predictor" in shown.stdout


def test_a_predictor_name_that_is_not_module_colon_name_is_a_usage_error():
    Path(os.environ["TRADING_CONFIG"]).write_text('predictor = "momentum.py"\n')
    config.reset()
    out = run("predict", "CBA", *SAMPLE)
    assert out.exit_code == 2 and "module:Name" in out.stderr


HANGS = """
    import threading
    release = threading.Event()

    class Slow:
        def calculate_confidence(self, symbol, tech_data, news_data, volume_data, market_data):
            if symbol == "BHP.AX":
                release.wait(600)     # hangs, as a predictor stuck on a network call does
            return {"action": "HOLD", "confidence": 0.5}
"""


@pytest.mark.slow
def test_a_hung_predictor_is_cut_off_and_the_socket_activated_service_stays_healthy(activate):
    write("hangs", HANGS)
    configure("hangs:Slow", predictor_timeout=1.5)
    proc = activate("prediction", idle_exit=30)
    client = Client(config.get(), in_process="never", timeout=30)
    try:
        first = client.call("prediction", "health_check")
        assert first["predictor"] == {"name": "hangs:Slow", "loaded": False}  # not imported yet
        started = time.monotonic()
        out = client.call("prediction", "generate_predictions",
                          {"symbols": ["CBA", "BHP", "ANZ"], "source": "sample"})
        took = time.monotonic() - started
        assert took < 10, took  # the budget, plus the peers' cold start in-process
        assert list(out["results"]) == ["CBA.AX"]
        bhp, anz = out["errors"]["BHP.AX"], out["errors"]["ANZ.AX"]
        assert bhp["problem"] == anz["problem"] == "predictor-timeout"
        assert "did not answer for BHP.AX within 1.5s" in bhp["message"]
        assert "used up the 1.5s budget" in anz["message"]

        # Healthy: health answers at once and shows the stuck predictor and its import time.
        started = time.monotonic()
        health = client.call("prediction", "health_check")
        assert time.monotonic() - started < 1.0
        assert health["status"] == "ok" and health["predictor"]["busy_s"] >= 1.0
        assert health["predictor"]["import_ms"] >= 0 and health["predictor"]["ok"] is True
        # The next call waits its own budget for the stuck one, and says so.
        again = client.call("prediction", "generate_predictions",
                            {"symbols": ["CBA"], "source": "sample"})
        assert "still busy" in again["errors"]["CBA.AX"]["message"]
        assert client.call("prediction", "history", {"limit": 10})[0]["symbol"] == "CBA.AX"
    finally:
        client.close()
    # A hung predictor thread does not keep the process from stopping.
    proc.proc.terminate()
    assert proc.proc.wait(15) == 0


# -- evaluated like ours: replay, backtest and report side by side ----------------------------

@pytest.mark.slow
def test_replay_backtest_and_report_put_the_example_beside_the_rules_and_baselines(asx_daily):
    shutil.copy(EXAMPLE, predictors_dir())
    configure(MOMENTUM)
    one = ["-s", "CBA", "-s", "BHP", "--start", "2025-06-02", "--end", "2025-08-29"]
    out = run("replay", str(asx_daily), *one, "--compare", "--json")
    assert out.exit_code == 0, out.output
    body = json.loads(out.stdout)
    runs = {r["predictor"]["name"]: r for r in body["runs"]}
    assert set(runs) == {MOMENTUM, predictors.DEFAULT}
    assert runs[MOMENTUM]["predictions"] == runs[predictors.DEFAULT]["predictions"] > 100
    assert runs[MOMENTUM]["run_id"].endswith(":" + MOMENTUM)
    # Replaying one predictor again replaces its own rows only.
    assert run("replay", str(asx_daily), *one).exit_code == 0
    rep = json.loads(run("report", "--origin", "replay", "--json").stdout)
    assert rep["predictions"] == {"replay": 2 * runs[MOMENTUM]["predictions"]}
    by = rep["by_predictor"]  # each predictor's own scorecard, per horizon
    assert set(by) == {MOMENTUM, predictors.DEFAULT}
    assert by[MOMENTUM]["1"]["n"] == by[predictors.DEFAULT]["1"]["n"]
    only = json.loads(run("report", "--origin", "replay", "--predictor", MOMENTUM,
                          "--json").stdout)
    assert only["horizons"]["1"] == by[MOMENTUM]["1"]
    table = run("report", "--origin", "replay")
    assert "momentum BUY/SELL" in table.stdout and "rules HOLD" in table.stdout

    bt = run("backtest", "CBA", "BHP", "--source", f"csv:{asx_daily}", "--start", "2025-06-02",
             "--end", "2025-08-29", "--compare", "--json")
    assert bt.exit_code == 0, bt.output
    r = json.loads(bt.stdout)
    assert r["predictor"]["name"] == MOMENTUM and r["failed"] == 0
    names = [c["name"] for c in r["comparison"]]
    assert names == [MOMENTUM, predictors.DEFAULT, "always BUY (buy and hold)",
                     "always HOLD (cash)"]
    assert r["comparison"][0]["calls"] == r["calls"]
    shown = run("backtest", "CBA", "BHP", "--source", f"csv:{asx_daily}", "--start",
                "2025-06-02", "--end", "2025-08-29", "--compare")
    assert "always BUY" in shown.stdout and "momentum" in shown.stdout


def test_a_backtest_of_a_predictor_that_fails_says_how_many_it_could_not_make(asx_daily):
    write("half", """
        def predict(*, symbol, market, sentiment, model, config):
            if market["as_of"].endswith(("1", "3", "5", "7", "9")):
                raise RuntimeError("odd day")
            return {"action": "BUY", "confidence": 0.9}
    """)
    out = run("backtest", "CBA", "--source", f"csv:{asx_daily}", "--start", "2025-06-02",
              "--end", "2025-06-30", "--predictor", "half:predict", "--json")
    assert out.exit_code == 0, out.output
    r = json.loads(out.stdout)
    assert r["failed"] > 0 and r["signals"] > 0
    assert r["errors"]["predictor-failed"]["count"] == r["failed"]
    assert "RuntimeError: odd day" in r["errors"]["predictor-failed"]["first"]
