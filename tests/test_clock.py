"""One wall clock, which TRADING_NOW pins: in the code, and in the suite on any day it runs.

A job at ``TRADING_NOW=2026-11-24 11:00`` once read its bars up to the real today, so the
suite's answers changed with the day it ran. Three guards: :mod:`trading.clock` itself; a
scan that no other module reads the wall clock; and the date-sensitive test modules run
again with the interpreter's wall clock moved to two far-apart days
(``tests/support/fake_day``), where they must pass as they do today.
"""

from __future__ import annotations

import ast
import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest

from trading import clock
from trading.errors import ConfigError
from trading.market import asx

REPO = Path(__file__).resolve().parent.parent
SOURCES = [REPO / "lib", REPO / "handlers", REPO / "cli"]


def test_unset_it_is_the_real_time(monkeypatch):
    monkeypatch.delenv("TRADING_NOW", raising=False)
    before = dt.datetime.now(dt.timezone.utc)
    now = clock.now()
    assert before <= now <= dt.datetime.now(dt.timezone.utc)
    assert abs(clock.time() - now.timestamp()) < 5


def test_set_it_pins_every_reading(monkeypatch):
    monkeypatch.setenv("TRADING_NOW", "2026-12-24T11:00")  # Sydney time: AEDT, UTC+11
    assert clock.now() == dt.datetime(2026, 12, 24, 0, 0, tzinfo=dt.timezone.utc)
    assert clock.time() == dt.datetime(2026, 12, 24, 0, 0, tzinfo=dt.timezone.utc).timestamp()
    assert clock.today() == dt.date(2026, 12, 24)
    assert asx.now() == dt.datetime(2026, 12, 24, 11, 0, tzinfo=asx.TZ)
    monkeypatch.setenv("TRADING_NOW", "2026-06-15T23:30+00:00")  # Sydney's 16 June already
    assert clock.today() == dt.date(2026, 6, 16)


def test_a_bad_value_is_a_config_error_naming_it(monkeypatch):
    monkeypatch.setenv("TRADING_NOW", "teatime")
    with pytest.raises(ConfigError, match="TRADING_NOW='teatime'"):
        clock.time()


def test_the_bar_cache_and_the_sample_source_end_where_the_pinned_moment_says(monkeypatch):
    from trading.market.sources import SampleSource

    monkeypatch.setenv("TRADING_NOW", "2026-11-24T11:00")  # Tuesday, in the session
    bars = SampleSource().fetch(["CBA.AX"], dt.date(2026, 11, 1), dt.date(2030, 1, 1))
    assert bars.bars["CBA.AX"].dates[-1] == "2026-11-23"  # Monday: the last closed session


# -- nothing else reads the wall clock ---------------------------------------------------------
# (module, attribute) pairs that read the wall clock, as a call or handed over as a clock.
WALL_CLOCK = {("datetime", "now"), ("datetime", "utcnow"), ("datetime", "today"),
              ("date", "today"), ("time", "time"), ("time", "time_ns"),
              ("time", "localtime"), ("time", "gmtime"), ("time", "ctime")}


# ``time.gmtime(epoch)`` and its kin, given a moment, format it: not a reading.
FORMATTERS = {"localtime", "gmtime", "ctime"}


def wall_clock_reads(path: Path) -> list[str]:
    """``file:line: name.attr`` for each read of the wall clock in ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    given = {id(c.func) for c in ast.walk(tree)
             if isinstance(c, ast.Call) and c.args and isinstance(c.func, ast.Attribute)
             and c.func.attr in FORMATTERS}
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute) or id(node) in given:
            continue
        base = node.value
        name = base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", None)
        if (name, node.attr) in WALL_CLOCK:
            found.append((node.lineno, f"{path.name}:{node.lineno}: {name}.{node.attr}"))
    return [hit for _, hit in sorted(found)]


def test_only_the_clock_module_reads_the_wall_clock():
    offenders = [hit for root in SOURCES for path in sorted(root.rglob("*.py"))
                 if path != REPO / "lib" / "clock.py" for hit in wall_clock_reads(path)]
    assert offenders == [], "read trading.clock instead (TRADING_NOW pins it):\n" + "\n".join(
        offenders)


def test_the_scan_finds_each_way_of_reading_the_wall_clock(tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text("import datetime as dt, time\n"
                       "a = dt.date.today()\nb = time.time\nc = dt.datetime.now(None)\n"
                       "d = time.gmtime()\ne = time.gmtime(0)\n")
    assert [h.split(": ")[1] for h in wall_clock_reads(planted)] == [
        "date.today", "time.time", "datetime.now", "time.gmtime"]


# -- the date-sensitive tests on other days ----------------------------------------------------
# What reads a date: the job gate and its alerts, predictions and their outcomes, training
# windows, backtests, the bar cache's freshness, the dashboard's staleness marks.
DATE_SENSITIVE = ["test_clock.py", "test_notify.py", "test_schedule.py", "test_predictions.py",
                  "test_prediction_cycle.py", "test_training.py", "test_market_cache.py",
                  "test_calibration.py", "test_web.py", "test_cli.py"]
# Not meaningful with the moved clock: the shim loads pandas first (the page-path import
# check) and matplotlib's date units expect the real datetime class (the charts).
NOT_WITH_THE_SHIM = "not imports_no_pandas and not chart"
NOT_THIS_TEST = "not pass_on_another_day"  # (slow tests run, so this one would run itself)
# Each awkward: the first Monday after tests/data/asx-daily ends, before the open, and the
# last day of a financial year mid-session, eighteen months on. Never before the data (a real
# day is not), and within three years of it: training and backtests on a csv folder read the
# three years before today.
REAL_DAYS = ["2026-01-05T09:00:00+11:00", "2027-06-30T11:45:00+10:00"]
FAKE_DAY = REPO / "tests" / "support" / "fake_day"  # a sitecustomize that moves the clock


@pytest.mark.slow
@pytest.mark.parametrize("day", REAL_DAYS)
def test_the_date_sensitive_tests_pass_on_another_day(day, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADING_", "LISTEN_"))}
    env.update(FAKE_DAY=day, PYTHONPATH=os.pathsep.join(
        [str(FAKE_DAY), *filter(None, [os.environ.get("PYTHONPATH")])]))
    probe = subprocess.run([sys.executable, "-c", "import time; from trading import clock; "
                            "print(clock.today(), time.time())"],
                           capture_output=True, text=True, env=env, timeout=60)
    shown_day, shown_time = probe.stdout.split()
    moved_to = dt.datetime.fromisoformat(day).timestamp()
    assert shown_day == day[:10] and abs(float(shown_time) - moved_to) < 30, probe
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "-m", "not systemd", "-k", f"{NOT_WITH_THE_SHIM} and {NOT_THIS_TEST}",
         "--basetemp", str(tmp_path / "t"),
         *[str(REPO / "tests" / m) for m in DATE_SENSITIVE]],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=1200)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
