"""The timers' calendars, checked by systemd's own parser against the schedule we mean.

``systemd-analyze calendar --base-time=... --iterations=N`` (systemd >= 250) lists the next
elapses of each ``OnCalendar=`` expression exactly as the manager computes them. The expected
runs are built independently in Python (Sydney wall-clock times on weekdays, converted to UTC
with zoneinfo), for a January (AEDT, UTC+11), a June (AEST, UTC+10) and a daylight-saving
change-over week. The old crontab line is checked the same way, to show what it did wrong.
No manager is needed; tests/test_schedule_systemd.py checks the installed timers.
"""

from __future__ import annotations

import datetime as dt
import re
import subprocess
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from support.units import exposure

from trading.ops import schedule

REPO = Path(__file__).resolve().parent.parent
UNITS = REPO / "units"
SYD = ZoneInfo("Australia/Sydney")
UTC = dt.timezone.utc
JOBS = {"predict": "trading-predict", "outcomes": "trading-outcomes", "train": "trading-train"}
ALERTING_JOBS = ("predict", "outcomes")  # they send alerts: network allowed (issue 17)

# What each timer is meant to do, in Sydney wall-clock time: (weekdays, times).
PREDICT_TIMES = [dt.time(h, m) for h in range(10, 16) for m in (0, 30)] + [dt.time(16, 35)]
INTENDED = {
    "predict": (range(0, 5), PREDICT_TIMES),
    "outcomes": (range(0, 5), [dt.time(17, 30)]),
    "train": ([5], [dt.time(7, 0)]),
}
# Base times (UTC): the Sunday before a January week (AEDT), a June week (AEST), and the
# weeks when daylight saving ends (Sun 5 Apr 2026) and starts (Sun 4 Oct 2026).
BASES = {
    "january": dt.datetime(2026, 1, 11, 0, 0, tzinfo=UTC),
    "june": dt.datetime(2026, 6, 14, 0, 0, tzinfo=UTC),
    "april-dst-ends": dt.datetime(2026, 4, 4, 0, 0, tzinfo=UTC),
    "october-dst-starts": dt.datetime(2026, 10, 3, 0, 0, tzinfo=UTC),
}
_ELAPSE = re.compile(r"(?:Next elapse|Iter\. #\d+): \w+ (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC")


def directives(path: Path, key: str) -> list[str]:
    return [line.split("=", 1)[1].strip() for line in path.read_text().splitlines()
            if line.startswith(f"{key}=")]


def calendar(expressions: list[str], base: dt.datetime, n: int) -> list[dt.datetime]:
    """The first ``n`` elapses after ``base`` over all expressions, from systemd-analyze."""
    r = subprocess.run(["systemd-analyze", "calendar", f"--iterations={n}",
                        f"--base-time=@{int(base.timestamp())}", *expressions],
                       capture_output=True, text=True, env={"TZ": "UTC", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    found = sorted(dt.datetime.fromisoformat(t).replace(tzinfo=UTC)
                   for t in _ELAPSE.findall(r.stdout))
    assert len(found) == n * len(expressions), r.stdout
    return found[:n]


def intended(job: str, base: dt.datetime, n: int) -> list[dt.datetime]:
    """The first ``n`` runs after ``base`` as we mean them, converted to UTC by zoneinfo."""
    days, times = INTENDED[job]
    out: list[dt.datetime] = []
    day = base.astimezone(SYD).date()
    while len(out) < n:
        if day.weekday() in days:
            for t in times:
                moment = dt.datetime.combine(day, t, SYD).astimezone(UTC)
                if moment > base:
                    out.append(moment)
        day += dt.timedelta(days=1)
    return sorted(out)[:n]


@pytest.mark.parametrize("base", list(BASES), ids=list(BASES))
@pytest.mark.parametrize("job", list(JOBS))
def test_each_timer_fires_at_the_intended_sydney_times_in_both_seasons(job, base):
    timer = UNITS / f"{JOBS[job]}.timer"
    expressions = directives(timer, "OnCalendar")
    assert expressions and all(e.endswith(" Australia/Sydney") for e in expressions)
    n = {"predict": 40, "outcomes": 6, "train": 2}[job]
    assert calendar(expressions, BASES[base], n) == intended(job, BASES[base], n)


def test_the_next_elapse_table_for_a_january_and_a_june_monday():
    """The first and last runs of a session day, in UTC: AEDT is UTC+11, AEST UTC+10."""
    expressions = directives(UNITS / "trading-predict.timer", "OnCalendar")
    jan = calendar(expressions, BASES["january"], 13)
    jun = calendar(expressions, BASES["june"], 13)
    assert [t.strftime("%a %H:%M") for t in (jan[0], jan[-2], jan[-1])] == \
        ["Sun 23:00", "Mon 04:30", "Mon 05:35"]    # Mon 12 Jan 10:00, 15:30, 16:35 AEDT
    assert [t.strftime("%a %H:%M") for t in (jun[0], jun[-2], jun[-1])] == \
        ["Mon 00:00", "Mon 05:30", "Mon 06:35"]    # Mon 15 Jun 10:00, 15:30, 16:35 AEST


def test_the_old_utc_crontab_line_is_right_in_winter_and_wrong_in_daylight_time():
    # `*/30 0-5 * * 1-5` in UTC, written as systemd would read it.
    old = ["Mon..Fri *-*-* 00..05:00/30:00 UTC"]

    def sydney_day(base):
        runs = calendar(old, base, 12)
        return [t.astimezone(SYD).strftime("%H:%M") for t in runs]

    june = sydney_day(BASES["june"])
    assert (june[0], june[-1]) == ("10:00", "15:30")
    jan = sydney_day(BASES["january"])
    # Daylight time: starts at 11:00 (the first trading hour missed) and runs at 16:00 and
    # 16:30, after the close; and Monday's first UTC run is already Monday 11:00 Sydney.
    assert (jan[0], jan[-2], jan[-1]) == ("11:00", "16:00", "16:30")


@pytest.mark.parametrize("base", ["january", "june"])
def test_every_predict_run_on_an_ordinary_session_passes_the_gate(base):
    """The timer and the gate agree: no run of a normal day is turned away."""
    expressions = directives(UNITS / "trading-predict.timer", "OnCalendar")
    runs = calendar(expressions, BASES[base] + dt.timedelta(days=1), 13)  # Monday's 13 runs
    delay = dt.timedelta(seconds=int(directives(UNITS / "trading-predict.timer",
                                                "RandomizedDelaySec")[0]))
    for t in runs:
        for late in (dt.timedelta(0), delay + dt.timedelta(minutes=1)):  # + AccuracySec
            assert schedule.gate("predict", t + late).run, (t, late)


@pytest.mark.parametrize("job", list(JOBS))
def test_timer_and_service_pair(job):
    timer, service = UNITS / f"{JOBS[job]}.timer", UNITS / f"{JOBS[job]}.service"
    assert directives(timer, "Persistent") == ["true"]
    assert directives(timer, "WantedBy") == ["trading.target"]
    assert directives(timer, "PartOf") == ["trading.target"]
    assert directives(service, "Type") == ["oneshot"]
    assert directives(service, "ExecStart") == [f"@VENV@/bin/trading job {job}"]
    if job in ALERTING_JOBS:  # they send alerts after the service commits (issue 17)
        assert directives(service, "RestrictAddressFamilies") == ["AF_UNIX AF_INET AF_INET6"]
        assert directives(service, "StateDirectory") == ["trading"]
    else:
        assert directives(service, "RestrictAddressFamilies") == ["AF_UNIX"]
        assert directives(service, "PrivateNetwork") == ["yes"]
    env = " ".join(directives(service, "Environment"))
    assert "TRADING_IN_PROCESS=never" in env and "TRADING_RUNTIME_DIR=%t/trading" in env
    assert directives(service, "@system@User") == ["trading"]
    assert directives(service, "ProtectHome") == ["@PROTECT_HOME@"]


def test_predict_randomized_delay_is_small():
    (delay,) = directives(UNITS / "trading-predict.timer", "RandomizedDelaySec")
    assert 0 < int(delay) <= 120  # well inside the 30-minute spacing and the gate's grace
    assert dt.timedelta(seconds=int(delay)) + dt.timedelta(minutes=1) < schedule.FINAL_RUN_GRACE


def test_systemd_analyze_verify_is_silent_on_the_timers_and_their_services(rendered):
    units = [str(rendered["system"] / f"{u}.{k}") for u in JOBS.values()
             for k in ("timer", "service")]
    r = subprocess.run(["systemd-analyze", "verify", *units], capture_output=True, text=True)
    assert (r.returncode, r.stdout + r.stderr) == (0, "")


@pytest.mark.parametrize("mode", ["system", "user"])
@pytest.mark.parametrize("job", list(JOBS))
def test_job_services_are_hardened_to_the_offline_target(rendered, mode, job):
    level = exposure(rendered[mode] / f"{JOBS[job]}.service")
    print(f"{mode} {JOBS[job]}.service exposure {level}")
    # 1.5 offline; the jobs that send alerts are held to the networked services' 2.5
    assert level <= (2.5 if job in ALERTING_JOBS else 1.5)
