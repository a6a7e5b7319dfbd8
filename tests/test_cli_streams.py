"""Issue 30, what the trader types: `trading history` one stream at a time (a column, filters,
the others named), `history`/`report`/`explain` reading the store with the services stopped,
`predict`/`explain` in a plugged predictor's own terms, per-command predictor overrides that
reach a service's socket, `trading status` naming handlers that run an older configuration,
and the small ones (`-s`, `job --help`, `logs` for a --user install, the package list).

Handlers run in-process unless a test starts one on a socket (systemd-socket-activate);
the data is the built-in sample source and the ASX history in tests/data: no network.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from trading import config
from trading.cli.main import COMMANDS, app, load_command
from trading.signals import predictors

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "predictors" / "momentum.py"
MOMENTUM = "momentum:EnhancedMarketAwarePredictor"
SAMPLE = ["--source", "sample"]


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def with_momentum() -> None:
    """The example predictor in the predictors folder beside the configuration (not set)."""
    folder = Path(os.environ["TRADING_CONFIG"]).parent / "predictors"
    folder.mkdir(exist_ok=True)
    shutil.copy(EXAMPLE, folder / "momentum.py")


def table_rows(stdout: str) -> list[str]:
    """The data rows of the first table: the lines after the rule of dashes, until a blank
    or a line that is not a row."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("---")) + 1
    rows = []
    for line in lines[start:]:
        if not line.strip() or line.startswith(("also stored", "its conf")):
            break
        rows.append(line)
    return rows


# -- history: one stream at a time ------------------------------------------------------------

@pytest.fixture
def three_streams(asx_daily):
    """Live rules calls (sample data), live momentum calls (--predictor) and a csv replay of
    the rules: three streams of the same symbols."""
    with_momentum()
    assert run("predict", "CBA", "BHP", *SAMPLE).exit_code == 0
    out = run("predict", "CBA", *SAMPLE, "--predictor", MOMENTUM)
    assert out.exit_code == 0, out.output
    out = run("replay", str(asx_daily), "--symbol", "CBA", "--start", "2025-12-01")
    assert out.exit_code == 0, out.output
    return asx_daily


def test_history_shows_the_live_stream_of_the_configured_predictor_and_names_the_others(
        three_streams):
    out = run("history")
    assert out.exit_code == 0, out.output
    assert "the live stream of rules" in out.stdout  # which stream, on screen
    rows = table_rows(out.stdout)
    assert len(rows) == 2 and all(r.rstrip().endswith("live sample rules") for r in rows)
    hint = next(line for line in out.stdout.splitlines() if line.startswith("also stored"))
    assert "replay csv rules (--origin replay)" in hint
    assert "1 live sample momentum (--predictor momentum)" in hint
    assert "--all" in hint

    replays = run("history", "--origin", "replay", "-n", "1000")
    rows = table_rows(replays.stdout)
    assert len(rows) > 10 and all(r.rstrip().endswith("replay csv rules") for r in rows)
    assert "the replay stream of rules" in replays.stdout

    mine = json.loads(run("history", "--predictor", "momentum", "--json").stdout)
    assert [(p["symbol"], p["stream"]) for p in mine] == [
        ("CBA.AX", {"origin": "live", "source": "sample", "predictor": MOMENTUM,
                    "interval": "1d"})]
    assert json.loads(run("history", "--predictor", MOMENTUM, "--json").stdout) == mine

    every = json.loads(run("history", "--all", "-n", "1000", "--json").stdout)
    assert {(p["stream"]["origin"], p["stream"]["source"], p["stream"]["predictor"])
            for p in every} == {("live", "sample", predictors.DEFAULT),
                                ("live", "sample", MOMENTUM),
                                ("replay", "csv", predictors.DEFAULT)}
    only_csv = json.loads(run("history", "--all", "--source", "csv", "-n", "1000",
                              "--json").stdout)
    assert only_csv and {p["stream"]["source"] for p in only_csv} == {"csv"}
    folder = json.loads(run("history", "--all", "--source", f"csv:{three_streams}", "-n",
                            "1000", "--json").stdout)
    assert len(folder) == len(only_csv)


def test_history_of_a_stream_with_nothing_says_which_and_where_the_rest_is(three_streams):
    out = run("history", "BHP", "--origin", "replay")
    assert out.exit_code == 0, out.output
    assert "no predictions stored for BHP in the replay stream of rules" in out.stdout
    assert "also stored: 1 live sample rules (--origin live)" in out.stdout
    bad = run("history", "--origin", "paper")
    assert bad.exit_code == 2 and "expected live or replay" in bad.stderr


def test_the_history_rpc_keeps_every_stream_unless_asked(three_streams):
    """The method's callers that ask for no stream (the chart's markers) get all of them."""
    from trading import handlers

    client = handlers.client(config.get(), in_process="always")
    try:
        rows = client.call("prediction", "history", {"limit": 1000})
        assert {p["stream"]["origin"] for p in rows} == {"live", "replay"}
        streams = client.call("prediction", "streams", {"symbol": "CBA"})
        assert [(s["origin"], s["predictor"], s["predictions"] > 0) for s in streams][:2] == [
            ("live", MOMENTUM, True), ("live", predictors.DEFAULT, True)]
    finally:
        client.close()


# -- reading the store with the services stopped ---------------------------------------------

def test_history_report_and_explain_read_the_store_when_the_services_are_stopped(
        monkeypatch, runtime_dir):
    assert run("predict", "CBA", *SAMPLE).exit_code == 0
    db = Path(config.get().db_file)
    before = (db.stat().st_mtime_ns, db.stat().st_size)
    # `trading stop`: systemd holds the sockets stopped, so nothing may run in-process quietly
    from trading.ops import systemd

    monkeypatch.setattr(systemd, "stopped_reason",
                        lambda service, environ=None: f"{service} is stopped (test): run "
                        f"`trading start {service}`")
    for args in (["history"], ["report", "--include-sample"], ["explain", "CBA"]):
        out = run(*args)
        assert out.exit_code == 0, (args, out.output)
        notes = out.stderr.splitlines()
        assert notes == ["trading: prediction is stopped (test); reading the store directly "
                         "(read-only)"], notes
    assert "CBA.AX" in run("history").stdout
    assert "predictions stored: 1 live" in run("report", "--include-sample").stdout
    assert (db.stat().st_mtime_ns, db.stat().st_size) == before
    # Writing still needs the services: one line, exit 3.
    assert run("report", "--evaluate").exit_code == 3
    monkeypatch.setattr(systemd, "stopped_reason", lambda service, environ=None: None)

    # A socket that is there but refuses (its unit failed): the same, read from the store.
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(runtime_dir / "prediction.sock"))
    dead.close()
    out = run("history", "--json")
    assert out.exit_code == 0, out.output
    assert [p["symbol"] for p in json.loads(out.stdout)] == ["CBA.AX"]
    assert "refused the connection" in out.stderr and "read-only" in out.stderr


def test_in_process_never_still_refuses_to_read_here(monkeypatch):
    assert run("predict", "CBA", *SAMPLE).exit_code == 0
    monkeypatch.setenv("TRADING_IN_PROCESS", "never")
    config.reset()
    out = run("history")
    assert out.exit_code == 3 and "no socket at" in out.stderr


# -- a plugged predictor in its own terms ----------------------------------------------------

def test_predict_and_explain_speak_a_plugged_predictors_language():
    with_momentum()
    out = run("predict", "CBA", *SAMPLE, "--predictor", MOMENTUM)
    assert out.exit_code == 0, out.output
    assert "P(right)" not in out.stdout and "its conf." in out.stdout
    assert "momentum's own confidence, not a calibrated probability" in out.stdout
    conf = json.loads(run("history", "--predictor", "momentum", "--json").stdout)[0][
        "confidence"]
    assert f"{conf:.2f}" in table_rows(out.stdout)[0]
    assert "CBA.AX: CBA.AX:" not in out.stdout  # its reason, once

    text = run("explain", "CBA", "--predictor", "momentum")
    assert text.exit_code == 0, text.output
    assert f"its confidence {conf:.2f} (momentum's own figure)" in text.stdout
    assert "None" not in text.stdout and "none, too little history" not in text.stdout
    assert "component" not in text.stdout.split("reports no")[0]  # no empty table
    assert text.stdout.count("reports no components, thresholds or calibrated probability") == 1
    assert "stream: live, sample data, predictor momentum, 1d" in text.stdout

    # The rules' explain keeps its table, thresholds and calibration line.
    assert run("predict", "CBA", *SAMPLE).exit_code == 0
    rules = run("explain", "CBA").stdout
    assert "components (0..1" in rules and "BUY threshold" in rules and "None" not in rules
    assert "probability of being right" in rules


def test_explain_without_a_live_call_of_the_configured_predictor_says_whose_it_shows():
    with_momentum()
    assert run("predict", "CBA", *SAMPLE, "--predictor", MOMENTUM).exit_code == 0
    out = run("explain", "CBA")
    assert out.exit_code == 0, out.output
    assert ("stream: live, sample data, predictor momentum, 1d (not the live stream of the "
            "configured predictor, rules)") in out.stdout


# -- per-command predictor overrides reach the service --------------------------------------

def test_trading_predictor_for_one_command_reaches_a_service_on_its_socket(activate,
                                                                            monkeypatch):
    with_momentum()
    svc = activate("prediction")  # started with the configured predictor: the rules
    monkeypatch.setenv("TRADING_PREDICTOR", MOMENTUM)  # this command only
    config.reset()
    out = run("predict", "CBA", *SAMPLE, "--json")
    assert out.exit_code == 0, out.output
    assert "in-process" not in out.stderr  # through the socket
    assert json.loads(out.stdout)["predictor"]["name"] == MOMENTUM
    monkeypatch.delenv("TRADING_PREDICTOR")
    config.reset()
    table = run("predict", "CBA", *SAMPLE)
    assert "predictor " not in table.stdout.splitlines()[0]  # the configured rules again
    # Only the rules or a predictor in the owner's folder may be named on a call.
    bad = run("predict", "CBA", *SAMPLE, "--predictor", "os:getcwd")
    assert bad.exit_code == 2
    assert bad.stderr.strip().splitlines() == [
        "trading: error: predictor os:getcwd: a call may choose the built-in rules or a "
        f"predictor in {config.get().predictors_dir} (no os.py there); any other is set as "
        "`predictor` in the configuration"]
    svc.stop()


# -- status: a handler running an older configuration ---------------------------------------

def test_status_names_a_running_handler_that_loaded_an_older_configuration(activate):
    from trading.cli import status
    from trading.ops.systemd import ServiceRow

    conf = Path(os.environ["TRADING_CONFIG"])
    conf.write_text("timeout = 20\n")
    config.reset()
    svc = activate("prediction")
    from trading import handlers

    client = handlers.client(config.get(), in_process="never")
    health = client.call("prediction", "health_check")
    client.close()
    assert health["config_loaded"]["file"] == str(conf)
    row = ServiceRow(service="prediction", socket="listening", socket_state="active/listening",
                     state="active", service_state="active/running", pid=health["pid"],
                     memory_bytes=None, memory_source=None, socket_path=str(svc.path),
                     restarts=0, ok=True)
    assert status._older_config([row]) == []
    conf.write_text("timeout = 25\n")
    assert status._older_config([row]) == [
        {"service": "prediction", "pid": health["pid"], "file": str(conf)}]
    conf.unlink()  # removed since: older too
    assert len(status._older_config([row])) == 1
    svc.stop()


# -- the small ones ----------------------------------------------------------------------------

def _commands():
    for name in COMMANDS:
        cmd = load_command(name)
        yield from ((f"{name} {s}", c) for s, c in cmd.commands.items()) if hasattr(
            cmd, "commands") else [(name, cmd)]


def test_dash_s_means_source_in_every_command():
    meanings = {name: p.opts for name, c in _commands() for p in c.params if "-s" in p.opts}
    assert meanings and all("--source" in opts for opts in meanings.values()), meanings
    out = run("backtest", "--source", "csv:tests/data/asx-daily", "-s", "CBA")
    assert out.exit_code == 2
    assert out.stderr.strip() == (
        "trading: unknown source 'CBA': expected yahoo, sample or csv:DIR (-s is --source in "
        "every command; symbols are arguments, or replay's --symbol)")


def test_job_help_says_trading_now_really_runs_the_job():
    text = " ".join(run("job", "--help").stdout.split())
    assert "TRADING_NOW" in text and "would do" not in text
    assert "really predicts, stores and sends alerts" in text


class _Exec(Exception):
    pass


@pytest.mark.parametrize("install, euid, expected", [
    # root, with a --user install of uid 1000: that user's journal, not root's own
    ({"mode": "user", "uid": "1000"}, 0,
     ["_SYSTEMD_USER_UNIT=trading-prediction.service", "_UID=1000", "+",
      "USER_UNIT=trading-prediction.service", "_UID=1000"]),
    # the install's own user
    ({"mode": "user", "uid": "1000"}, 1000, ["--user", "-u", "trading-prediction.service"]),
    # a system install read by a member of the group: the system journal
    ({"mode": "system"}, 1000, ["-u", "trading-prediction.service"]),
    (None, 0, ["-u", "trading-prediction.service"]),
    (None, 1000, ["--user", "-u", "trading-prediction.service"]),
])
def test_logs_reads_the_journal_of_the_manager_the_install_uses(monkeypatch, install, euid,
                                                                expected):
    seen = []

    def execv(path, argv):
        seen.append(argv)
        raise _Exec

    monkeypatch.setattr("trading.config.read_install", lambda prefix=None: install)
    monkeypatch.setattr(os, "geteuid", lambda: euid)
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/journalctl")
    monkeypatch.setattr(os, "execv", execv)
    out = run("logs", "prediction", "-n", "5")
    assert isinstance(out.exception, _Exec), out.output
    assert seen == [["/usr/bin/journalctl", *expected, "-n", "5", "--no-pager"]]


def test_every_folder_the_wheel_carries_is_a_listed_package():
    """A folder left out of [tool.setuptools] packages makes setuptools print ~40 lines of
    "Package would be ignored" per folder on every pip install (install.sh's fallback)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(project["packages"])
    roots = {name: REPO / folder for name, folder in project["package-dir"].items()}
    found = set()
    for name, root in roots.items():
        for folder in [root, *(p for p in root.rglob("*") if p.is_dir())]:
            if folder.name == "__pycache__" or not any(f.is_file() for f in folder.iterdir()):
                continue
            dotted = ".".join([name, *folder.relative_to(root).parts])
            owner = max((n for n in roots if dotted == n or dotted.startswith(n + ".")),
                        key=len)
            if owner == name:
                found.add(dotted)
    assert found - listed == set()
    # and each one's files are package data
    data = project["package-data"]
    assert {"trading.web.templates", "trading.web.static", "trading.web.static.vendor"} <= set(
        data)
