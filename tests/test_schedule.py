"""The market-hours gate of the scheduled jobs, and ``trading job`` / ``trading schedule``
without systemd.

The gate is checked against the 2026 ASX calendar (holidays from the ``holidays`` library's
XASX calendar; the dates are the exchange's published closures) at Sydney times in both
seasons. ``trading job predict`` is run through the real CLI: closed, it prints one line and
touches nothing; open, it runs the handlers in-process on the sample source (what a cron line
does where systemd is absent) and the predictions are in the store.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re

import pytest
from typer.testing import CliRunner

from trading.market import asx
from trading import config
from trading.ops import schedule
from trading.cli.main import app
from trading.errors import ConfigError
from trading.runtime.store import Store

SYD = asx.TZ
HOLIDAYS_2026 = {
    "2026-01-01": "New Year's Day",
    "2026-01-26": "Australia Day",
    "2026-04-03": "Good Friday",
    "2026-04-06": "Easter Monday",
    "2026-06-08": "King's Birthday",
    "2026-12-25": "Christmas Day",
    "2026-12-28": "Boxing Day",
}


def at(day: str, hhmm: str) -> dt.datetime:
    return dt.datetime.fromisoformat(f"{day}T{hhmm}").replace(tzinfo=SYD)


def run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(app, list(args), env=env)


# -- the gate -----------------------------------------------------------------------------

@pytest.mark.parametrize("day", sorted(HOLIDAYS_2026))
def test_2026_asx_holidays_close_every_market_job(day):
    for job in ("predict", "outcomes"):
        for hhmm in ("10:00", "12:30", "16:15", "17:30"):
            d = schedule.gate(job, at(day, hhmm))
            assert not d.run, (job, day, hhmm)
            assert d.reason.startswith("market closed: "), d.reason
    # One line that names the day: "market closed: Christmas Day" (the library's wording may
    # add "(observed)" to a moved holiday, so compare the name's start).
    reason = schedule.gate("predict", at(day, "11:00")).reason
    assert reason.removeprefix("market closed: ").startswith(HOLIDAYS_2026[day].split("'")[0])


def test_christmas_day_says_so_in_one_line():
    assert schedule.gate("predict", at("2026-12-25", "11:00")) == schedule.Decision(
        False, "market closed: Christmas Day")


@pytest.mark.parametrize("day", ["2026-01-02", "2026-01-27", "2026-04-02", "2026-04-07",
                                 "2026-06-09", "2026-08-03", "2026-11-24", "2026-12-29"])
def test_ordinary_weekdays_are_open_in_both_seasons(day):
    assert dt.date.fromisoformat(day).weekday() < 5
    for hhmm in ("10:00", "10:30", "13:00", "15:30"):
        d = schedule.gate("predict", at(day, hhmm))
        assert d == schedule.Decision(True, "market open"), (day, hhmm, d)
    final = schedule.gate("predict", at(day, "16:35"))
    assert final == schedule.Decision(True, "after the close: final run of the session")
    # Between the close and 16:32 the free feed still has pre-auction prices: not final.
    early = schedule.gate("predict", at(day, "16:15"))
    assert early.run and "prices final at 16:32" in early.reason and "not" in early.reason
    assert schedule.gate("outcomes", at(day, "17:30")).run


@pytest.mark.parametrize("day,name", [("2026-11-28", "Saturday"), ("2026-11-29", "Sunday"),
                                      ("2026-06-13", "Saturday")])
def test_weekends_are_closed(day, name):
    for job in ("predict", "outcomes"):
        assert schedule.gate(job, at(day, "11:00")) == schedule.Decision(
            False, f"market closed: {name}")


def test_outside_the_session_predict_says_when_it_opens_or_closed():
    assert schedule.gate("predict", at("2026-11-24", "09:59")) == schedule.Decision(
        False, "market closed: opens at 10:00 Sydney")
    assert schedule.gate("predict", at("2026-11-24", "17:03")) == schedule.Decision(
        False, "market closed: closed at 16:00 Sydney")
    # The timer's final run (16:35 plus its random delay) is still the session's last run.
    assert schedule.gate("predict", at("2026-11-24", "16:37")).run
    assert schedule.gate("predict", at("2026-11-24", "16:52")).run


def test_the_readmes_half_hourly_cron_line_gets_a_final_run_every_session():
    """Without systemd the cron line of docs/scheduling.md fires at :00 and :30: 16:00 and 16:30 come
    before the close reaches the feed (16:32), so 17:00 must count as the final run."""
    for day in ("2026-11-24", "2026-06-15"):  # daylight time and standard time
        runs = {hhmm: schedule.gate("predict", at(day, hhmm))
                for hhmm in ("16:00", "16:30", "17:00", "17:30")}
        assert runs["16:00"].run and "not the session's final run" in runs["16:00"].reason
        assert runs["16:30"].run and "not the session's final run" in runs["16:30"].reason
        assert runs["17:00"] == schedule.Decision(True, "after the close: final run of the "
                                                        "session")
        assert not runs["17:30"].run


@pytest.mark.parametrize("day", ["2026-12-24", "2026-12-31"])
def test_early_close_at_1410_keeps_the_1500_run_as_final_and_skips_the_rest(day):
    assert asx.session_hours(dt.date.fromisoformat(day))[1].strftime("%H:%M") == "14:10"
    assert schedule.gate("predict", at(day, "14:00")) == schedule.Decision(True, "market open")
    # 14:30: after the close, but the auction's prices (14:22) reach the feed only at 14:42.
    live = schedule.gate("predict", at(day, "14:30"))
    assert live.run and "early close 14:10" in live.reason and "not" in live.reason
    final = schedule.gate("predict", at(day, "15:00"))
    assert final == schedule.Decision(True, "after the close (early close 14:10): final run "
                                            "of the session")
    for hhmm in ("15:30", "16:35"):
        assert schedule.gate("predict", at(day, hhmm)) == schedule.Decision(
            False, "market closed: closed at 14:10 Sydney (early close)"), hhmm
    # Its closing prices are in the feed at 14:42: the 17:30 scoring run goes ahead.
    assert schedule.gate("outcomes", at(day, "17:30")).run
    assert not schedule.gate("outcomes", at(day, "14:40")).run


def test_the_gate_reads_sydney_time_whatever_zone_the_moment_is_in():
    # 23:30 UTC on Sunday 22 Nov is 10:30 AEDT on Monday 23 Nov: open.
    utc = dt.datetime(2026, 11, 22, 23, 30, tzinfo=dt.timezone.utc)
    assert schedule.gate("predict", utc).run
    # 23:30 UTC on Sunday 14 June is 09:30 AEST on Monday: not yet.
    winter = dt.datetime(2026, 6, 14, 23, 30, tzinfo=dt.timezone.utc)
    assert schedule.gate("predict", winter).reason == "market closed: opens at 10:00 Sydney"
    with pytest.raises(ValueError):
        schedule.gate("predict", dt.datetime(2026, 11, 24, 11, 0))


def test_outcomes_before_the_close_waits_and_training_always_runs():
    d = schedule.gate("outcomes", at("2026-11-24", "09:00"))
    assert not d.run and "16:32" in d.reason
    for day in ("2026-11-28", "2026-12-25", "2026-11-24"):
        assert schedule.gate("train", at(day, "07:00")).run
    with pytest.raises(ValueError):
        schedule.gate("backup", at("2026-11-24", "11:00"))


def test_trading_now_is_sydney_time_unless_it_has_an_offset():
    assert schedule.now({"TRADING_NOW": "2026-12-24T11:00"}) == at("2026-12-24", "11:00")
    t = schedule.now({"TRADING_NOW": "2026-06-15T00:30+00:00"})
    assert (t.hour, t.minute, t.utcoffset()) == (10, 30, dt.timedelta(hours=10))
    real = schedule.now({})
    assert abs(real - dt.datetime.now(dt.timezone.utc)) < dt.timedelta(seconds=5)
    with pytest.raises(ConfigError, match="TRADING_NOW"):
        schedule.now({"TRADING_NOW": "Christmas"})


# -- trading job --------------------------------------------------------------------------

def test_job_on_a_holiday_prints_one_line_exits_0_and_touches_nothing():
    r = run("job", "predict", env={"TRADING_NOW": "2026-12-25T11:00"})
    assert (r.exit_code, r.stdout) == (0, "market closed: Christmas Day\n"), r.output
    assert r.stderr == ""  # no in-process note: no handler was asked anything
    assert not config.get().db_path.exists()
    j = run("job", "outcomes", "--json", env={"TRADING_NOW": "2026-04-03T17:30"})
    body = json.loads(j.stdout)
    assert (j.exit_code, body["ran"], body["reason"]) == (0, False, "market closed: Good Friday")


def test_job_in_market_hours_without_systemd_runs_in_process_and_stores_predictions():
    env = {"TRADING_NOW": "2026-11-24T11:00", "TRADING_SOURCE": "sample",
           "TRADING_NEWS_SOURCE": "sample"}
    r = run("job", "predict", env=env)
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0] == "market open (Tue 2026-11-24 11:00 AEDT): running predict"
    assert lines[1].startswith("stored 7 prediction(s)"), lines
    assert "in-process" in r.stderr  # the cron path: no socket, the handlers run here
    stored = Store(config.get().db_path)
    with stored.transaction() as db:
        n = db.execute("SELECT count(*) FROM predictions").fetchone()[0]
    assert n == 7
    # The calls stand on Monday's close; by 17:30 Tuesday's session is final, so each has its
    # 1-session outcome and waits for its 5-session one. (Every clock reads TRADING_NOW: the
    # bars end where the job's moment says, whatever day the test runs.)
    o = run("job", "outcomes", env={**env, "TRADING_NOW": "2026-11-24T17:30"})
    assert o.exit_code == 0, o.output
    assert o.stdout.splitlines()[-1] == (
        "scored 7 outcome(s); 7 prediction(s) wait for more sessions")


def _dead_socket(name: str):
    """A socket file nobody listens on (bound, never listening: connect is refused), what a
    service whose process died leaves behind where nothing removes the file."""
    import socket

    path = os.path.join(os.environ["TRADING_RUNTIME_DIR"], f"{name}.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    return sock


def test_job_falls_back_in_process_when_the_service_cannot_be_reached():
    """Issue 30: with the service down `trading job predict` exited 3 and nothing fell back
    (the old cron proxy fell back to the monolith). Now it runs the same handlers here, says
    so in one line, and exits 0; TRADING_IN_PROCESS=never refuses, in one line, exit 3."""
    env = {"TRADING_NOW": "2026-11-24T11:00", "TRADING_SOURCE": "sample",
           "TRADING_NEWS_SOURCE": "sample"}
    dead = _dead_socket("prediction")
    try:
        r = run("job", "predict", env=env)
        assert r.exit_code == 0, r.output
        assert r.stdout.splitlines()[1].startswith("stored 7 prediction(s)"), r.stdout
        (line,) = [ln for ln in r.stderr.splitlines() if "cannot be reached" in ln]
        assert line.startswith("trading: prediction cannot be reached (prediction refused the "
                               "connection at "), line
        assert line.endswith("the job runs the handlers in-process instead, as the old proxy "
                             "fell back to the monolith")
        body = json.loads(run("job", "predict", "--json", env=env).stdout)
        assert body["ran"] and body["in_process"] is True and len(body["result"]["results"]) == 7
        config.reset()  # a fresh process reads its settings afresh
        never = run("job", "predict", env={**env, "TRADING_IN_PROCESS": "never"})
        assert never.exit_code == 3, never.output
        assert "Traceback" not in never.output and never.stderr.count("\n") == 1
        assert "prediction refused the connection" in never.stderr
    finally:
        dead.close()
    with Store(config.get().db_path).transaction() as db:
        assert db.execute("SELECT count(*) FROM predictions").fetchone()[0] == 14


def test_job_usage_errors_are_one_line_and_exit_2():
    bad = run("job", "backup")
    assert bad.exit_code == 2 and bad.stderr.strip() == (
        "trading: unknown job 'backup': expected one of predict, outcomes, train")
    now = run("job", "predict", env={"TRADING_NOW": "teatime"})
    assert now.exit_code == 2 and "Traceback" not in now.output
    assert now.stderr.count("\n") == 1 and "TRADING_NOW" in now.stderr


# -- trading schedule without systemd -------------------------------------------------------

def test_schedule_without_systemd_says_so_and_gives_the_cron_line(tmp_path, monkeypatch):
    # No systemctl on PATH is what a container or a CI VM without systemd looks like.
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    r = run("schedule")
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("systemd is not running here: no timer runs the jobs")
    assert "*/30 * * * * trading job predict" in r.stdout
    body = json.loads(run("schedule", "--json").stdout)
    assert body["systemd"] is None and body["timers"] == []
    assert os.environ["PATH"] == str(empty)


@pytest.mark.slow
def test_weekly_train_job_registers_a_model_without_activating_it():
    env = {"TRADING_NOW": "2026-11-28T07:00", "TRADING_SOURCE": "sample"}
    r = run("job", "train", env=env)
    assert r.exit_code == 0, r.output
    first, summary = r.stdout.splitlines()[:2]
    assert first == "weekly training: runs on any day (Sat 2026-11-28 07:00 AEDT): running train"
    assert summary.startswith("registered model ") and "(not activated" in summary, summary
    for name in ("model", "rules", "majority"):  # the model against its two baselines
        assert re.search(rf"out-of-sample accuracy .*\b{name} 0\.\d{{3}}\b.* on \d+ rows",
                         summary), (name, summary)
    models = json.loads(run("models", "--json").stdout)
    assert len(models) == 1 and not models[0]["active"]
    assert summary.split()[2] == models[0]["version"]
