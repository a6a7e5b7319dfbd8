"""The ``trading`` command through typer's runner: every command, tables and ``--json``, the
documented exit codes, one-line failures, completion, and the chart's PNG.

The services run in-process (no socket installed) unless a test puts a socket in the runtime
directory: a dead one (refused), or a listener that never answers (timeout). The data is the
built-in sample source and the real ASX history in tests/data; nothing touches the network.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from trading import config
from trading.cli.main import COMMANDS, app, load_command

SAMPLE = ["--source", "sample"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run(*args: str, **kwargs):
    return CliRunner().invoke(app, list(args), **kwargs)


def one_line_failure(result, code: int) -> str:
    """The failure is the documented exit code and one line on stderr (besides the note that
    handlers run in-process), never a traceback."""
    assert result.exit_code == code, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = [line for line in result.stderr.splitlines()
             if "running the handler in-process" not in line]
    assert len(lines) == 1, result.stderr
    return lines[0]


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, "not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


# -- the command list and its conventions -----------------------------------------------------

# Commands that print data must take --json; these print none (or print JSON already).
NO_DATA = {"serve", "logs", "call", "web"}  # web serves pages (their data: /api/)


def _commands():
    for name in COMMANDS:
        cmd = load_command(name)
        if hasattr(cmd, "commands"):
            for sub, c in cmd.commands.items():
                yield f"{name} {sub}", c
        else:
            yield name, cmd


def test_every_data_command_takes_json():
    names = dict(_commands())
    assert {"predict", "market", "sentiment", "chart", "history", "events", "report", "replay",
            "train", "models", "backtest", "status", "config show"} <= set(names)
    missing = [n for n, c in names.items() if n not in NO_DATA
               and not any("--json" in p.opts for p in c.params)]
    assert missing == [], f"commands that print data without --json: {missing}"


def test_help_lists_the_commands_and_tells_the_exit_codes():
    result = run("--help")
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    for code in ("0 ok", "1 failure", "2 usage or bad input", "3 service unavailable",
                 "4 timeout"):
        assert code in text
    for name, _ in _commands():
        assert name.split()[0] in text
    assert "chart" in COMMANDS


def test_no_command_shows_help_and_an_unknown_one_is_a_usage_error():
    assert "Usage: trading" in run().output
    bad = run("predikt")
    assert bad.exit_code == 2 and "No such command" in bad.output


def test_a_bad_option_is_a_usage_error():
    assert run("events", "--limit", "0").exit_code == 2
    assert run("chart", "CBA", "--period", "7w").exit_code == 2
    assert run("history", "--limit", "many").exit_code == 2


def test_shell_completion_script_and_answers():
    # The script `trading --show-completion` prints in bash. Asked for by name: the option
    # itself finds the shell from the process tree, which differs from run to run of a suite.
    trading = Path(sys.executable).parent / "trading"
    shown = subprocess.run([str(trading)], env={**os.environ, "_TRADING_COMPLETE": "source_bash"},
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and "_trading_completion" in shown.stdout, shown.stderr
    # The real completion protocol, as bash drives it through the installed script.
    env = {**os.environ, "_TRADING_COMPLETE": "complete_bash", "COMP_WORDS": "trading pre",
           "COMP_CWORD": "1"}
    out = subprocess.run([str(trading)], env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["predict"], out.stdout + out.stderr
    env.update(COMP_WORDS="trading logs ", COMP_CWORD="2")  # service names complete too
    out = subprocess.run([str(trading)], env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["market-data", "sentiment", "prediction", "training", "web"]


# -- predictions: predict, history, events, report, replay ----------------------------------

def test_predict_history_events_report_tables_and_json():
    table = run("predict", "CBA", "NAB", *SAMPLE)
    assert table.exit_code == 0, table.output
    assert "CBA.AX" in table.stdout and "NAB.AX" in table.stdout
    assert "strength" in table.stdout  # one line of reasons per row
    assert len([line for line in table.stderr.splitlines() if "in-process" in line]) == 1

    as_json = json.loads(run("predict", "BHP", *SAMPLE, "--json").stdout)
    p = as_json["results"]["BHP.AX"]
    assert p["action"] in ("BUY", "SELL", "HOLD") and 0 <= p["confidence"] <= 1

    hist = json.loads(run("history", "--json").stdout)
    assert [h["symbol"] for h in hist] == ["BHP.AX", "NAB.AX", "CBA.AX"]
    assert "BHP.AX" in run("history").stdout

    events = run("events", "--json", "-n", "2").stdout.splitlines()
    assert [json.loads(e)["payload"]["symbol"] for e in events] == ["NAB.AX", "BHP.AX"]
    assert "prediction" in run("events").stdout

    rep = json.loads(run("report", "--json").stdout)
    # Synthetic sample predictions stay out of the report unless asked for, and it says so.
    assert rep["predictions"] == {} and rep["sample_left_out"] == 3 and rep["outcomes"] == 0
    rep = json.loads(run("report", "--include-sample", "--json").stdout)
    assert rep["predictions"] == {"live": 3} and rep["sample_left_out"] == 0
    assert "3 from synthetic sample data left out" in run("report").stdout
    assert "no outcomes yet" in run("report").stdout


def test_replay_then_report(asx_daily):
    out = run("replay", str(asx_daily), "--symbol", "CBA", "--start", "2025-10-01", "--json")
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout)
    assert result["predictions"] > 50 and result["outcomes"]["evaluated"] > 0
    rep = json.loads(run("report", "--origin", "replay", "--json").stdout)
    assert rep["predictions"]["replay"] == result["predictions"]
    table = run("report", "--origin", "replay")
    assert table.exit_code == 0 and "hit rate" in table.stdout
    assert "replayed" in run("replay", str(asx_daily), "--symbol", "CBA", "--start",
                             "2025-12-01").stdout


def test_replay_of_a_missing_directory_or_a_bad_date_is_a_usage_error(tmp_path, asx_daily):
    assert run("replay", str(tmp_path / "nope")).exit_code == 2
    bad = run("replay", str(asx_daily), "--symbol", "CBA", "--start", "2025-6-1")
    assert bad.exit_code == 2 and "not a date like" in bad.output


def test_predict_with_every_symbol_bad_fails_with_one_line_each():
    # every symbol refused as input: exit 2 (usage), as market and sentiment do
    result = run("predict", "../x", *SAMPLE)
    assert one_line_failure(result, 2).startswith("trading: ../x:")


# -- market, sentiment ---------------------------------------------------------------------

def test_market_and_sentiment_tables_and_json():
    m = run("market", "CBA", *SAMPLE)
    assert m.exit_code == 0 and "CBA.AX" in m.stdout and "RSI" in m.stdout
    data = json.loads(run("market", "CBA", "WBC", *SAMPLE, "--json").stdout)
    assert set(data["results"]) == {"CBA.AX", "WBC.AX"}
    s = json.loads(run("sentiment", "CBA", *SAMPLE, "--json").stdout)
    assert -1 <= s["results"]["CBA.AX"]["score"] <= 1
    assert "CBA.AX" in run("sentiment", "CBA", *SAMPLE).stdout


@pytest.mark.parametrize("command", ["market", "sentiment", "chart"])
def test_a_bad_symbol_is_one_line_and_exit_2(command):
    result = run(command, "../etc", *SAMPLE)
    assert "invalid symbol" in one_line_failure(result, 2)
    assert result.stdout == ""  # no empty table


@pytest.mark.parametrize("command", ["market", "predict", "chart"])
def test_an_unknown_source_is_one_line_and_exit_2(command):
    args = [command, "CBA", "--source", "ftp://x"]
    assert "unknown source" in one_line_failure(run(*args), 2)


# -- chart ----------------------------------------------------------------------------------

def test_chart_writes_a_png_with_the_stored_predictions_marked(asx_daily, tmp_path):
    source = f"csv:{asx_daily}"
    assert run("replay", str(asx_daily), "--symbol", "CBA", "--start", "2025-09-01").exit_code == 0
    out = tmp_path / "cba.png"
    result = run("chart", "cba", "--source", source, "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    drawn = json.loads(result.stdout)
    assert png_size(out) == (1100, 800)
    assert out.stat().st_size > 30_000  # three panes of lines, not an empty canvas
    assert drawn["symbol"] == "CBA.AX" and drawn["path"] == str(out)
    assert drawn["last"] == "2026-01-02" and 120 <= drawn["bars"] <= 130  # six months shown
    # Every replayed session in the six months shown is marked, each at its bar's close.
    hist = json.loads(run("history", "CBA", "--origin", "replay", "--json", "-n", "1000").stdout)
    shown = {h["session"] for h in hist if h["session"] >= drawn["first"]}
    assert len(drawn["markers"]) == len(shown) > 50
    assert sum(drawn["counts"].values()) == len(shown)
    assert {m["action"] for m in drawn["markers"]} >= {"BUY", "HOLD"}
    bars = json.loads(run("call", "market-data", "get_bars", "symbol=CBA", "period=1y",
                          f"source={source}").stdout)["bars"]
    close = {b["date"]: b["close"] for b in bars}
    assert all(m["close"] == close[m["date"]] for m in drawn["markers"])
    # The table form says where the file went and what was marked.
    again = run("chart", "CBA", "--source", source, "-o", str(out), "--period", "1mo")
    assert again.exit_code == 0 and str(out) in again.stdout and "BUY" in again.stdout


def test_chart_defaults_to_symbol_png_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run("chart", "NAB", *SAMPLE)
    assert result.exit_code == 0, result.output
    assert png_size(tmp_path / "NAB.AX.png") == (1100, 800)
    assert "no stored predictions" not in result.stdout


def test_chart_options_fail_in_one_line(tmp_path):
    assert "--out needs a .png" in one_line_failure(
        run("chart", "CBA", *SAMPLE, "--out", str(tmp_path / "x.jpg")), 2)
    assert "--period" in one_line_failure(run("chart", "CBA", *SAMPLE, "-p", "1d"), 2)
    assert "cannot write" in one_line_failure(
        run("chart", "CBA", *SAMPLE, "--out", str(tmp_path / "no" / "dir.png")), 1)


def test_chart_without_the_prediction_service_still_draws_the_price(runtime_dir, tmp_path):
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(runtime_dir / "prediction.sock"))  # a socket file nobody listens on
    dead.close()
    out = tmp_path / "c.png"
    result = run("chart", "CBA", *SAMPLE, "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "predictions not marked: prediction refused the connection" in result.stderr
    assert png_size(out) == (1100, 800)


def test_the_chart_module_draws_without_any_service(tmp_path):
    """lib/charts.py on hand-made bars: a straight rise gives RSI 100 and a marker at its bar."""
    import datetime as dt

    from trading.ops import charts

    day = dt.date(2026, 1, 1)
    bars = [{"date": (day + dt.timedelta(days=i)).isoformat(), "close": 10.0 + i}
            for i in range(60)]
    preds = [{"session": bars[50]["date"], "action": "BUY", "confidence": 0.8},
             {"session": "2020-01-01", "action": "SELL", "confidence": 0.9}]  # out of range
    s = charts.draw(tmp_path / "x.png", "TEST.AX", bars, preds, show_days=30)
    assert png_size(tmp_path / "x.png") == (1100, 800)
    assert s["rsi"] == 100.0 and s["close"] == 69.0 and s["sma20"] == 59.5
    assert s["markers"] == [{"date": bars[50]["date"], "index": 20, "close": 60.0,
                             "action": "BUY", "confidence": 0.8}]
    assert s["counts"] == {"BUY": 1, "SELL": 0, "HOLD": 0}


# -- training -------------------------------------------------------------------------------

def test_train_models_activate_tables_and_json(asx_daily):
    assert run("models", "--json").stdout.strip() == "[]"
    assert "no models yet" in run("models").stdout
    trained = run("train", "CBA", "NAB", "--source", f"csv:{asx_daily}", "--folds", "3",
                  "--json")
    assert trained.exit_code == 0, trained.output
    version = json.loads(trained.stdout)["version"]
    listed = json.loads(run("models", "--json").stdout)
    assert [m["version"] for m in listed] == [version] and not listed[0]["active"]
    act = run("activate", version, "--force")  # a 3-fold toy model rarely beats the majority
    assert act.exit_code == 0 and version in act.stdout
    assert json.loads(run("models", "--json").stdout)[0]["active"]
    assert "*" in run("models").stdout
    assert json.loads(run("activate", "none", "--json").stdout) is None
    assert not json.loads(run("models", "--json").stdout)[0]["active"]
    assert json.loads(run("activate", version, "--force", "--json").stdout)["version"] == version
    assert "no model 'nope'" in one_line_failure(run("activate", "nope"), 1)


# -- status, config, call, serve, logs ------------------------------------------------------

def test_status_without_systemd_says_so(monkeypatch, tmp_path):
    # No systemctl on PATH: the answer is the same as on a machine without systemd.
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    table = run("status")
    assert table.exit_code == 0, table.output
    assert table.stdout.startswith("systemd is not running here")
    data = json.loads(run("status", "--json").stdout)
    assert data["systemd"] is None and data["services"] == []


def test_config_show_names_the_file_and_a_bad_file_is_one_line(monkeypatch):
    cfg_file = Path(os.environ["TRADING_CONFIG"])
    cfg_file.write_text('symbols = ["CBA.AX"]\n')
    config.reset()
    shown = json.loads(run("config", "show", "--json").stdout)
    sym = next(s for s in shown["settings"] if s["key"] == "symbols")
    assert sym["value"] == ["CBA.AX"] and sym["source"] == str(cfg_file)
    # The environment beats the file, and the command that uses the value sees the same.
    monkeypatch.setenv("TRADING_SYMBOLS", "NAB")
    config.reset()
    shown = json.loads(run("config", "show", "--json").stdout)
    sym = next(s for s in shown["settings"] if s["key"] == "symbols")
    assert sym["value"] == ["NAB"] and sym["source"] == "env TRADING_SYMBOLS"
    predicted = json.loads(run("predict", *SAMPLE, "--json").stdout)
    assert list(predicted["results"]) == ["NAB.AX"]
    monkeypatch.delenv("TRADING_SYMBOLS")
    cfg_file.write_text("[weights]\ntechnical = 'heavy'\n")
    config.reset()
    line = one_line_failure(run("predict", *SAMPLE), 2)
    assert "weights.technical" in line and str(cfg_file) in line


def test_a_bad_environment_value_is_one_line(monkeypatch):
    monkeypatch.setenv("TRADING_TIMEOUT", "soon")
    config.reset()
    assert "TRADING_TIMEOUT" in one_line_failure(run("history"), 2)


def test_call_prints_json_and_fails_in_one_line():
    health = json.loads(run("call", "market-data", "health_check").stdout)
    assert health["service"] == "market-data"
    assert "unknown service" in one_line_failure(run("call", "nope", "x"), 2)
    assert "--params is not JSON" in one_line_failure(
        run("call", "market-data", "health_check", "--params", "{"), 2)
    assert "no method" in one_line_failure(run("call", "market-data", "nope"), 1)
    assert "invalid symbol" in one_line_failure(
        run("call", "market-data", "get_bars", "symbol=../x"), 2)


def test_serve_and_logs_reject_an_unknown_service():
    assert "unknown service" in one_line_failure(run("serve", "nope"), 2)
    assert "unknown service" in one_line_failure(run("logs", "nope"), 2)


def test_logs_without_journalctl_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert "journalctl not found" in one_line_failure(run("logs", "prediction"), 1)


# -- services unreachable: exit 3 and 4 -----------------------------------------------------

@pytest.mark.parametrize("args", [
    ["predict", "CBA"], ["market", "CBA"], ["sentiment", "CBA"], ["chart", "CBA"],
    ["history"], ["events"], ["report"], ["models"], ["activate", "none"],
    ["call", "prediction", "health_check"],
])
def test_a_service_without_a_socket_is_exit_3(monkeypatch, args):
    monkeypatch.setenv("TRADING_IN_PROCESS", "never")
    config.reset()
    line = one_line_failure(run(*args), 3)
    assert "is not available: no socket at" in line


def test_a_service_that_does_not_answer_is_exit_4(runtime_dir):
    mute = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    mute.bind(str(runtime_dir / "market-data.sock"))
    mute.listen(4)  # connections land in the backlog and are never answered
    try:
        result = run("call", "market-data", "health_check", "--timeout", "0.3")
        assert "did not answer within 0.3s" in one_line_failure(result, 4)
    finally:
        mute.close()


def test_serve_runs_a_handler_on_a_socket_until_it_is_idle(runtime_dir):
    """`trading serve` as a shell runs it (it owns signals, so a process, not a thread): a real
    socket, one real call, then idle exit with status 0 and the socket file gone."""
    from conftest import wait_for

    from trading.runtime.client import Client

    path = runtime_dir / "sentiment.sock"
    trading = Path(sys.executable).parent / "trading"
    proc = subprocess.Popen([str(trading), "serve", "sentiment", "--socket", str(path),
                             "--idle-exit", "0.5"], stderr=subprocess.PIPE, text=True)
    try:
        wait_for(path.exists, timeout=30, what="the socket")
        c = Client(config.get(), in_process="never")
        assert c.call("sentiment", "health_check")["service"] == "sentiment"
        c.close()
        assert proc.wait(timeout=30) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not path.exists()


def test_serve_runs_a_peer_without_a_socket_in_process(runtime_dir, monkeypatch):
    """`trading serve prediction` with no other socket in the runtime directory: like a unit
    (trading.handlers.main), it runs market-data and sentiment in-process, so a prediction
    is made; without the registry it could only answer that market-data is unreachable."""
    from conftest import wait_for

    from trading.runtime.client import Client

    monkeypatch.setenv("TRADING_NEWS_SOURCE", "sample")  # offline: the default is Yahoo
    path = runtime_dir / "prediction.sock"
    trading = Path(sys.executable).parent / "trading"
    proc = subprocess.Popen([str(trading), "serve", "prediction", "--socket", str(path),
                             "--idle-exit", "30"], stderr=subprocess.PIPE, text=True)
    try:
        wait_for(path.exists, timeout=30, what="the socket")
        assert sorted(p.name for p in runtime_dir.iterdir()) == ["prediction.sock"]
        c = Client(config.get(), in_process="never")
        out = c.call("prediction", "generate_predictions",
                     {"symbols": ["CBA"], "source": "sample"}, timeout=120)
        c.close()
        assert list(out["results"]) == ["CBA.AX"], out
        assert not any("unavailable" in r for r in out["results"]["CBA.AX"]["reasons"]), out
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0, proc.stderr.read()
    assert not path.exists()


def test_logs_runs_journalctl_for_the_unit():
    trading = Path(sys.executable).parent / "trading"
    out = subprocess.run([str(trading), "logs", "market-data", "-n", "1"], capture_output=True,
                         text=True, timeout=60)
    if "journalctl not found" in out.stderr:
        pytest.skip("no journalctl on this machine")
    # journalctl ran (it says there are no entries, or shows them); never a traceback.
    assert out.returncode in (0, 1) and "Traceback" not in out.stderr, out.stderr


@pytest.fixture
def restore_logging():
    import logging

    root = logging.getLogger()
    saved = (root.level, list(root.handlers), logging.getLogger("yfinance").level,
             logging.getLogger("py.warnings").level)
    yield
    root.setLevel(saved[0])
    root.handlers[:] = saved[1]
    logging.getLogger("yfinance").setLevel(saved[2])
    logging.getLogger("py.warnings").setLevel(saved[3])
    logging.captureWarnings(False)


@pytest.mark.parametrize("level,noisy", [(None, False), ("DEBUG", True)])
def test_in_process_logging_is_one_line_per_error_and_yfinance_stays_quiet(
        restore_logging, capsys, monkeypatch, level, noisy):
    """Handlers run in-process log to the terminal: errors as one line each; yfinance's
    repeated failure reports and pandas' warnings about its calls only when asked (DEBUG)."""
    import logging
    import warnings

    from trading.cli import common

    if level:
        monkeypatch.setenv("TRADING_LOG_LEVEL", level)
    logging.captureWarnings(False)  # as in a fresh process (earlier commands here turned it on)
    common.setup_logging()
    logging.getLogger("trading.handlers.x").error("a bug in %s", "x")
    logging.getLogger("trading.news.headlines").warning("a warning")
    logging.getLogger("yfinance").error("Failed to get ticker 'CBA.AX'")
    warnings.warn_explicit("inplace is deprecated", FutureWarning, "multi.py", 220,
                           module="yfinance.multi")
    err = capsys.readouterr().err
    assert "trading: trading.handlers.x: a bug in x" in err
    assert ("a warning" in err) is noisy
    assert ("Failed to get ticker" in err) is noisy
    assert ("inplace is deprecated" in err) is noisy


def test_offline_yahoo_is_one_line_saying_unreachable(restore_logging, monkeypatch):
    """Real yfinance whose HTTP session cannot resolve Yahoo (as on a VM with its network
    down): the quieted yfinance logger must still tell trading.market.sources what happened."""
    from curl_cffi import requests as curl_requests
    from curl_cffi.requests.exceptions import DNSError

    def request(self, method, url, *args, **kwargs):
        raise DNSError("Failed to perform, curl: (6) Could not resolve host: "
                       "query2.finance.yahoo.com. See https://curl.se/libcurl/c/"
                       "libcurl-errors.html first for more details.")

    monkeypatch.setattr(curl_requests.Session, "request", request)
    monkeypatch.setenv("TRADING_SOURCE", "yahoo")
    config.reset()
    result = run("market", "CBA")
    line = one_line_failure(result, 1)
    assert "yahoo unreachable" in line and "Could not resolve host" in line, line
    assert "no data" not in result.stderr


def test_replay_refuses_an_empty_window_and_runs_without_an_index_file(tmp_path, asx_daily):
    bad = run("replay", str(asx_daily), "--symbol", "CBA", "--start", "2025-12-01",
              "--end", "2025-11-01")
    assert "after --end" in one_line_failure(bad, 2)
    only = tmp_path / "only"
    only.mkdir()
    (only / "CBA.AX.csv").write_text((asx_daily / "CBA.AX.csv").read_text())
    done = run("replay", str(only), "--symbol", "CBA", "--start", "2025-12-01", "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["predictions"] > 10


def test_sentiment_json_keeps_n_headlines():
    out = json.loads(run("sentiment", "CBA", *SAMPLE, "--json", "-n", "1").stdout)
    assert len(out["results"]["CBA.AX"]["headlines"]) == 1


@pytest.mark.parametrize("args", [["call", "training", "health_check", "--timeout", "-1"],
                                  ["logs", "prediction", "-n", "-5"],
                                  ["serve", "sentiment", "--idle-exit", "-1"]])
def test_out_of_range_numbers_are_usage_errors(args):
    assert run(*args).exit_code == 2


def test_an_in_process_store_failure_shows_its_cause(restore_logging, monkeypatch):
    monkeypatch.setenv("TRADING_STATE_DIR", "/proc/no-such-dir")
    config.reset()
    # Bars can be fetched again: served from the source, the store's failure only logged.
    assert run("market", "CBA", *SAMPLE).exit_code == 0
    result = run("events")  # the event log is only in the store
    assert result.exit_code != 0
    assert "cannot open the store: /proc/no-such-dir/trading.db" in result.stderr
    assert "Traceback" not in result.stderr
