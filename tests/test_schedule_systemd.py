"""The timers on a real install: ``install.sh --user`` into a sandboxed systemd user manager.

What issue 8 promises, checked on the real manager (tests/sandbox.py): the install enables
and starts the three timers; ``systemctl --user list-timers`` shows each one's next elapse
where ``systemd-analyze calendar`` puts the same expressions (plus at most the timer's
RandomizedDelaySec=), and the installed expressions give the intended Sydney times in AEDT and
AEST; ``trading schedule`` shows the same; starting ``trading-predict.service`` by hand at a
session time (``TRADING_NOW`` by drop-in, which the job's gate honours) stores predictions
through the socket-activated prediction, market-data and sentiment handlers, which then go
idle and exit; on Christmas Day the same start prints one line and starts no handler.

The tests in this module share one manager and run in file order.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3

import pytest
from conftest import wait_for
from sandbox import UserManager
from test_schedule_units import BASES, calendar, directives, intended

pytestmark = [pytest.mark.systemd, pytest.mark.slow]

TIMERS = {"trading-predict.timer": "predict", "trading-outcomes.timer": "outcomes",
          "trading-train.timer": "train"}
CHAIN = ("prediction", "market-data", "sentiment")
IDLE_EXIT = 3  # seconds, by drop-in; the shipped default is 30
SAMPLE = "TRADING_SOURCE=sample TRADING_NEWS_SOURCE=sample"


@pytest.fixture(scope="module")
def sd(installed: UserManager) -> UserManager:
    # The sandbox may park every timer in 2099 (a prefix drop-in) so no job fires during other
    # tests; these tests are about the real calendars, so take it away.
    quiet = installed.home / ".config/systemd/user/trading-.timer.d/sandbox-quiet.conf"
    if quiet.exists():
        installed.remove_drop_in(quiet)
    # The sample source (no network) and a short idle exit, for the handlers the job calls.
    for name in CHAIN:
        installed.drop_in(f"trading-{name}.service", "test-sample",
                          f"[Service]\nEnvironment={SAMPLE} TRADING_IDLE_EXIT={IDLE_EXIT}\n")
    return installed


def unit_dir(sd: UserManager):
    return sd.home / ".config/systemd/user"


def utc_show(sd: UserManager, unit: str, *props: str) -> dict[str, str]:
    """``systemctl show`` with timestamps printed in UTC (the client's TZ decides)."""
    args = ["systemctl", "--user", "show", unit, *[f"--property={p}" for p in props]]
    out = sd.run(*args, env={"TZ": "UTC"}).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def parse_utc(stamp: str) -> dt.datetime | None:
    """``Tue 2026-11-24 00:51:05 UTC`` -> datetime; empty -> None."""
    if not stamp.strip() or stamp.strip() == "n/a":
        return None
    return dt.datetime.strptime(stamp.strip(), "%a %Y-%m-%d %H:%M:%S UTC").replace(
        tzinfo=dt.timezone.utc)


def span(text: str) -> dt.timedelta:
    """A systemd time span as the units write it: ``60``, ``5min``, ``30min``."""
    text = text.strip()
    if text.endswith("min"):
        return dt.timedelta(minutes=int(text[:-3]))
    return dt.timedelta(seconds=int(text.rstrip("s")))


def list_timers(sd: UserManager) -> dict[str, dict]:
    out = sd.systemctl("list-timers", "--all", "--output=json").stdout
    return {t["unit"]: t for t in json.loads(out)}


def test_install_enables_and_starts_the_three_timers(sd):
    out = sd.install_output
    for timer in TIMERS:
        assert f"enabled {timer}" in out and f"started {timer}" in out, out
        assert sd.systemctl("is-enabled", timer).stdout.strip() == "enabled"
        assert sd.systemctl("is-active", timer).stdout.strip() == "active"
    plain = sd.systemctl("list-timers", "--all").stdout
    for timer, job in TIMERS.items():
        assert f"{timer} trading-{job}.service" in " ".join(plain.split()), plain


def test_next_elapses_match_systemd_analyze_calendar_for_the_installed_expressions(sd):
    listed = list_timers(sd)
    print("\ntimer                    next elapse (UTC)         calendar (UTC)       delay")
    for timer in TIMERS:
        path = unit_dir(sd) / timer
        expressions = directives(path, "OnCalendar")
        delay = span(directives(path, "RandomizedDelaySec")[0])
        p = utc_show(sd, timer, "LastTriggerUSec", "InactiveExitTimestamp")
        # systemd's base for the next elapse: the last trigger, else when the timer started.
        base = parse_utc(p["LastTriggerUSec"]) or parse_utc(p["InactiveExitTimestamp"])
        assert base is not None, p
        (expected,) = calendar(expressions, base, 1)
        nxt = dt.datetime.fromtimestamp(listed[timer]["next"] / 1e6, dt.timezone.utc)
        print(f"{timer:<24} {nxt:%Y-%m-%d %H:%M:%S}  {expected:%Y-%m-%d %H:%M:%S}  {delay}")
        assert expected <= nxt <= expected + delay + dt.timedelta(seconds=1), (timer, nxt,
                                                                                expected, delay)


@pytest.mark.parametrize("base", ["january", "june"])
def test_installed_expressions_give_sydney_times_in_aedt_and_aest(sd, base):
    for timer, job in TIMERS.items():
        expressions = directives(unit_dir(sd) / timer, "OnCalendar")
        n = 13 if job == "predict" else 2
        r = sd.run("systemd-analyze", "--user", "calendar", f"--iterations={n}",
                   f"--base-time=@{int(BASES[base].timestamp())}", *expressions,
                   env={"TZ": "UTC"})
        assert r.returncode == 0
        assert calendar(expressions, BASES[base], n) == intended(job, BASES[base], n)


def test_trading_schedule_shows_each_timer_what_it_runs_and_when(sd):
    body = json.loads(sd.trading("schedule", "--json").stdout)
    assert body["systemd"] == "user" and body["installed"] is True
    listed = list_timers(sd)
    rows = {t["timer"]: t for t in body["timers"]}
    assert set(rows) == set(TIMERS)
    for timer, job in TIMERS.items():
        row = rows[timer]
        assert row["runs"] == f"{sd.venv}/bin/trading job {job}"
        assert row["calendar"] == sorted(directives(unit_dir(sd) / timer, "OnCalendar"))
        assert row["enabled"] == "enabled" and row["state"] == "active/waiting"
        assert row["next_usec"] == listed[timer]["next"]
        utc = dt.datetime.fromisoformat(row["next"]["utc"])
        sydney = dt.datetime.fromisoformat(row["next"]["sydney"])
        assert utc == sydney and sydney.utcoffset() in (dt.timedelta(hours=10),
                                                         dt.timedelta(hours=11))
    table = sd.run(str(sd.home / ".local/bin/trading"), "schedule",
                   env={"COLUMNS": "160"}).stdout
    for job in TIMERS.values():
        assert f"trading job {job}" in table
    assert "UTC" in table and ("AEDT" in table or "AEST" in table)


def _started_at(sd: UserManager, name: str) -> int:
    return int(sd.show(f"trading-{name}.service", "ExecMainStartTimestampMonotonic")
               ["ExecMainStartTimestampMonotonic"] or 0)


def _predictions(sd: UserManager) -> int:
    db = sd.home / ".config/trading/trading.db"
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT count(*) FROM predictions").fetchone()[0]


def _run_job_by_hand(sd: UserManager, now: str) -> str:
    """Start trading-predict.service at TRADING_NOW=now; its output (the manager's log)."""
    sd.drop_in("trading-predict.service", "test-now",
               f"[Service]\nEnvironment=TRADING_NOW={now}\n")
    mark = len(sd.logs())
    sd.systemctl("start", "trading-predict.service", timeout=180)
    p = sd.show("trading-predict.service", "Result", "ExecMainStatus", "ActiveState")
    assert p == {"Result": "success", "ExecMainStatus": "0", "ActiveState": "inactive"}, (
        p, sd.logs()[mark:])
    return sd.logs()[mark:]


def test_on_christmas_day_the_job_says_market_closed_and_starts_no_handler(sd):
    # From here on the timers must not fire on their own in the middle of a check.
    sd.systemctl("stop", *TIMERS)
    sd.systemctl("stop", *[f"trading-{job}.service" for job in TIMERS.values()])  # a run in flight
    for name in CHAIN:
        sd.systemctl("stop", f"trading-{name}.service")
    before = {n: _started_at(sd, n) for n in CHAIN}
    stored = _predictions(sd)
    log = _run_job_by_hand(sd, "2026-12-25T11:00")
    assert "market closed: Christmas Day" in log.splitlines(), log
    assert {n: _started_at(sd, n) for n in CHAIN} == before
    assert _predictions(sd) == stored


def test_starting_the_predict_service_by_hand_stores_predictions_via_socket_activation(sd):
    before = {n: _started_at(sd, n) for n in CHAIN}
    stored = _predictions(sd)
    log = _run_job_by_hand(sd, "2026-11-24T11:00")
    assert "market open (Tue 2026-11-24 11:00 AEDT): running predict" in log, log
    assert "stored 7 prediction(s)" in log, log
    assert "in-process" not in log
    # systemd started each of the three handlers for this run, through its socket.
    after = {n: _started_at(sd, n) for n in CHAIN}
    assert all(after[n] > before[n] for n in CHAIN), (before, after)
    assert _predictions(sd) == stored + 7
    # Then every handler goes idle and exits: inactive units, no process left.
    wait_for(lambda: all(sd.show(f"trading-{n}.service", "ActiveState")["ActiveState"]
                         == "inactive" for n in CHAIN), IDLE_EXIT + 15, "idle exits")
    for n in CHAIN:
        p = sd.show(f"trading-{n}.service", "Result", "ExecMainStatus")
        assert p == {"Result": "success", "ExecMainStatus": "0"}, (n, p)
        assert sd.handler_pids(n) == []
    for name in CHAIN:
        assert sd.systemctl("is-active", f"trading-{name}.socket").stdout.strip() == "active"


def test_with_the_prediction_service_stopped_the_job_falls_back_in_process(sd):
    """Issue 30: the old cron proxy fell back to the monolith when the services were down;
    `trading job predict` exited 3. Run by hand (or by cron) with the prediction service
    stopped, it now runs the same handlers in-process, says so in one line and exits 0; the
    operator's stop is left as it was."""
    sd.trading("stop", "prediction")
    try:
        assert sd.systemctl("is-active", "trading-prediction.socket",
                            check=False).stdout.strip() == "inactive"
        stored = _predictions(sd)
        r = sd.run(str(sd.home / ".local/bin/trading"), "job", "predict", check=False,
                   timeout=180, env={"TRADING_NOW": "2026-11-24T11:00",
                                     "TRADING_SOURCE": "sample", "TRADING_NEWS_SOURCE": "sample",
                                     "TRADING_IN_PROCESS": "auto"})  # the default (the sandbox's
        # clients default to never)
        print(f"\n-- trading job predict, prediction stopped (exit {r.returncode}):\n"
              f"{r.stdout}{r.stderr}")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "stored 7 prediction(s)" in r.stdout
        (line,) = [ln for ln in r.stderr.splitlines() if "cannot be reached" in ln]
        assert line.startswith("trading: prediction cannot be reached (prediction is stopped "
                               "(trading-prediction.socket is not listening in the user "
                               "manager)); the job runs the handlers in-process instead"), line
        assert _predictions(sd) == stored + 7
        assert sd.systemctl("is-active", "trading-prediction.socket",
                            check=False).stdout.strip() == "inactive"
        never = sd.run(str(sd.home / ".local/bin/trading"), "job", "predict", check=False,
                       timeout=60, env={"TRADING_NOW": "2026-11-24T11:00",
                                        "TRADING_IN_PROCESS": "never"})
        assert never.returncode == 3 and never.stderr.count("\n") == 1, never.stderr
        # The timer's own run needs no fallback: its unit Wants= the sockets it calls, so
        # starting it starts a stopped socket again, and the run goes through systemd.
        log = _run_job_by_hand(sd, "2026-11-24T11:00")
        assert "stored 7 prediction(s)" in log and "in-process" not in log, log
        assert sd.systemctl("is-active", "trading-prediction.socket",
                            check=False).stdout.strip() == "active"
    finally:
        sd.trading("start", "prediction")
