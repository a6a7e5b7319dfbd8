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
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from trading import __version__, config
from trading.cli.main import app
from trading.runtime.client import Client
from trading.runtime.store import Store
from trading.signals import ledger, predictors

from conftest import REPO, wait_for

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


def test_calls_that_arrive_during_the_import_wait_for_it(monkeypatch):
    """A cold service's first calls come together (a timer, the CLI, the dashboard): 10 of 18
    concurrent first calls were refused "still importing after 0s" (bench/bench_memory.py
    --concurrent 18). Now they wait for the one import, each within its own timeout."""
    imports: list[str] = []
    rules = object()

    def slow_load(spec, directory):
        imports.append(spec)
        time.sleep(0.5)
        return rules

    monkeypatch.setattr(predictors, "_load", slow_load)
    monkeypatch.setattr(predictors, "_loaded", {})
    got, failed = [], []

    def first_call():
        try:
            got.append(predictors.load(predictors.DEFAULT, None, 10.0))
        except Exception as exc:  # noqa: BLE001 - counted
            failed.append(exc)

    threads = [threading.Thread(target=first_call) for _ in range(18)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failed and got == [rules] * 18 and imports == [predictors.DEFAULT]


# -- the monolith's argument shapes -----------------------------------------------------------

RECORDER = """
    import json, os

    class Recorder:
        def calculate_confidence(self, symbol, tech_data, news_data, volume_data, market_data):
            with open(os.environ["RECORDER_OUT"], "a") as f:  # it runs in its own process
                f.write(json.dumps({"symbol": symbol, "tech_data": dict(tech_data),
                                    "news_data": dict(news_data),
                                    "volume_data": dict(volume_data),
                                    "market_data": dict(market_data)}) + "\\n")
            tech_data["rsi"] = -1.0          # a predictor scribbling on its inputs
            market_data.clear()
            return {"action": "HOLD", "confidence": 0.5}
"""


def test_the_monolith_gets_its_exact_field_names_beside_ours_as_copies(monkeypatch, tmp_path):
    write("recorder", RECORDER)
    configure("recorder:Recorder")
    monkeypatch.setenv("RECORDER_OUT", str(tmp_path / "calls.jsonl"))
    out = run("predict", "CBA", "BHP", *SAMPLE, "--json")
    assert out.exit_code == 0, out.output
    calls = [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]
    assert [c["symbol"] for c in calls] == ["CBA.AX", "BHP.AX"]
    call = calls[0]
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


def test_an_answer_past_the_size_limit_is_cut_or_refused_and_history_still_works():
    """Issue 27: a 6 MB field in one answer was stored whole, and `trading history` and
    `trading events` failed for everyone until the row aged out. Now an answer over 64 KiB as
    JSON has its long texts cut (and says so), one still too large is refused with the
    reason, and the commands that read the rows work."""
    write("verbose", """
        def predict(*, symbol, market, sentiment, model, config):
            if symbol == "CBA.AX":
                return {"action": "BUY", "confidence": 0.6, "reason": "x" * 6_000_000}
            if symbol == "BHP.AX":  # no long text to cut: 200,000 short fields
                return {"action": "SELL", "confidence": 0.6,
                        "detail": {str(i): i for i in range(200_000)}}
            return {"action": "HOLD", "confidence": 0.5, "reason": "quiet"}
    """)
    configure("verbose:predict")
    out = run("predict", "CBA", "BHP", "ANZ", *SAMPLE, "--json")
    assert out.exit_code == 0, out.output
    body = json.loads(out.stdout)
    assert list(body["results"]) == ["CBA.AX", "ANZ.AX"]
    cba = body["results"]["CBA.AX"]
    assert cba["action"] == "BUY" and cba["cut"]["limit"] == predictors.ANSWER_LIMIT
    assert 6_000_000 < cba["cut"]["from_bytes"] < 6_001_000
    assert cba["reasons"][0].endswith("... [5998000 characters cut]")
    err = body["errors"]["BHP.AX"]
    assert err["problem"] == "invalid-prediction"
    assert "over the 65536 byte limit even with its long texts cut" in err["message"]

    stored = ledger.history(Store(config.get().db_path))
    assert {p["symbol"] for p in stored} == {"CBA.AX", "ANZ.AX"}
    assert all(len(json.dumps(p)) < predictors.ANSWER_LIMIT for p in stored)
    history = run("history", "--json")
    assert history.exit_code == 0 and len(history.stdout) < 2 * predictors.ANSWER_LIMIT
    assert run("history").exit_code == 0
    events = run("events", "--json", "-n", "50")
    assert events.exit_code == 0 and len(events.stdout) < 4 * predictors.ANSWER_LIMIT


def test_a_predictor_that_prints_or_exits_costs_its_own_symbols_only():
    """Its prints go to stderr, not into what its process answers; exiting ends its process,
    which costs that symbol and the rest of the call, and the next call starts it again."""
    write("abrupt", """
        import os

        def predict(*, symbol, market, sentiment, model, config):
            print("thinking about", symbol)  # stdout: must not break the answers
            if symbol == "BHP.AX":
                os._exit(3)
            return {"action": "HOLD", "confidence": 0.5}
    """)
    configure("abrupt:predict")
    body = json.loads(run("predict", "CBA", "BHP", "ANZ", *SAMPLE, "--json").stdout)
    assert list(body["results"]) == ["CBA.AX"]
    bhp, anz = body["errors"]["BHP.AX"], body["errors"]["ANZ.AX"]
    assert bhp["problem"] == anz["problem"] == "predictor-failed"
    assert "its process ended (exit status 3)" in bhp["message"]
    assert "process ended on an earlier symbol" in anz["message"]
    body = json.loads(run("predict", "CBA", "ANZ", *SAMPLE, "--json").stdout)
    assert list(body["results"]) == ["CBA.AX", "ANZ.AX"] and not body["errors"]


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


HANGS = {
    # stuck on a network call: the GIL is free, a thread could be left behind
    "waits": "threading.Event().wait(600)",
    # issue 27: one C call that never gives the GIL back (no bytecode runs, so no switch
    # interval applies): the whole service froze, health_check too, until the watchdog
    "holds-the-gil": "sum(range(10 ** 13))",
    # a pure-Python loop: the GIL is passed on every 5 ms, but the thread runs for ever
    "spins": "while True: pass",
}
HANG = """
    import threading

    class Slow:
        def calculate_confidence(self, symbol, tech_data, news_data, volume_data, market_data):
            if symbol == "BHP.AX":
                {hang}
            return {{"action": "HOLD", "confidence": 0.5}}
"""


@pytest.mark.slow
@pytest.mark.parametrize("hang", list(HANGS))
def test_a_hung_predictor_is_stopped_and_the_socket_activated_service_stays_healthy(activate,
                                                                                   hang):
    """However a predictor hangs, its call ends at the budget with the symbols done so far,
    health_check answers at once all along, its process is stopped, and the next call runs in
    a new one."""
    write("hangs", HANG.format(hang=HANGS[hang]))
    configure("hangs:Slow", predictor_timeout=1.5)
    proc = activate("prediction", idle_exit=30)
    client = Client(config.get(), in_process="never", timeout=30)
    watcher = Client(config.get(), in_process="never", timeout=30)
    try:
        first = client.call("prediction", "health_check")
        assert first["predictor"] == {"name": "hangs:Slow", "loaded": False}  # not imported yet
        health_took: list[float] = []
        done = threading.Event()

        def watch():  # health_check, every 0.1 s, while the predictor hangs
            while not done.is_set():
                t0 = time.monotonic()
                assert watcher.call("prediction", "health_check")["status"] == "ok"
                health_took.append(time.monotonic() - t0)
                time.sleep(0.1)

        started = time.monotonic()
        thread = threading.Thread(target=watch)
        thread.start()
        try:
            out = client.call("prediction", "generate_predictions",
                              {"symbols": ["CBA", "BHP", "ANZ"], "source": "sample"})
        finally:
            done.set()
            thread.join(10)
        took = time.monotonic() - started
        assert took < 10, took  # the budget, plus the peers' cold start in-process
        assert list(out["results"]) == ["CBA.AX"]
        bhp, anz = out["errors"]["BHP.AX"], out["errors"]["ANZ.AX"]
        assert bhp["problem"] == anz["problem"] == "predictor-timeout"
        assert "did not answer for BHP.AX within 1.5s" in bhp["message"]
        assert "its process was stopped" in bhp["message"]
        assert "used up the 1.5s budget" in anz["message"]
        assert len(health_took) >= 10 and max(health_took) < 1.0, health_took

        health = client.call("prediction", "health_check")
        assert health["status"] == "ok" and health["predictor"]["busy_s"] is None
        assert health["predictor"]["import_ms"] >= 0 and health["predictor"]["ok"] is True
        # The next call starts the predictor's process again.
        again = client.call("prediction", "generate_predictions",
                            {"symbols": ["CBA", "ANZ"], "source": "sample"})
        assert list(again["results"]) == ["CBA.AX", "ANZ.AX"] and not again["errors"]
        assert client.call("prediction", "history", {"limit": 10})[0]["symbol"] in (
            "CBA.AX", "ANZ.AX")
        [child] = children_of(first["pid"])  # kept warm for the next call
    finally:
        client.close()
        watcher.close()
    print(f"\n{hang}: call {took:.2f}s; health_check during it: max "
          f"{max(health_took) * 1000:.1f} ms over {len(health_took)} calls")
    proc.proc.terminate()
    assert proc.proc.wait(15) == 0
    wait_for(lambda: gone(child), timeout=5, what="the predictor's process to end with the service")


def children_of(pid: int) -> list[int]:
    kids = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        kids += [int(k) for k in (task / "children").read_text().split()]
    return kids


def gone(pid: int) -> bool:
    """Ended (a zombie waiting for its new parent counts)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except OSError:
        return True


# -- evaluated like ours: replay, backtest and report side by side ----------------------------

@pytest.mark.slow
def test_replay_backtest_and_report_put_the_example_beside_the_rules_and_baselines(asx_daily):
    shutil.copy(EXAMPLE, predictors_dir())
    configure(MOMENTUM)
    one = ["--symbol", "CBA", "--symbol", "BHP", "--start", "2025-06-02", "--end", "2025-08-29"]
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


def test_a_comparison_is_on_the_same_sessions_whoever_failed(asx_daily):
    """Issue 30, as found: with a predictor that raised on some sessions, `backtest --compare`
    scored the rules on more symbol-sessions than the predictor and the baselines. Now a
    symbol-session any contestant could not score is dropped for all, and the table says so."""
    write("half", """
        def predict(*, symbol, market, sentiment, model, config):
            if market["as_of"].endswith(("1", "3", "5", "7", "9")):
                raise RuntimeError("odd day")
            return {"action": "BUY", "confidence": 0.9}
    """)
    args = ["backtest", "CBA", "BHP", "--source", f"csv:{asx_daily}", "--start", "2025-06-02",
            "--end", "2025-07-31", "--predictor", "half:predict", "--compare"]
    out = run(*args, "--json")
    assert out.exit_code == 0, out.output
    r = json.loads(out.stdout)
    rows = r["comparison"]
    assert r["failed"] > 0 and r["comparison_dropped"] == r["failed"]
    assert len({c["signals"] for c in rows}) == 1, [(c["name"], c["signals"]) for c in rows]
    assert rows[0]["signals"] == r["signals"]
    half, rules = rows[0], rows[1]
    assert half["edge"]["calls"] == half["buy"] and rules["name"] == predictors.DEFAULT
    shown = run(*args)
    assert (f"all on the same {r['signals']:,} symbol-sessions; {r['failed']:,} dropped for all"
            in shown.stdout), shown.stdout
