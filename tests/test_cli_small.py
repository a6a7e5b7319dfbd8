"""The small ones of issue 19, each as a person met it: Ctrl-C during ``trading chart`` and
``trading events -f``, ``trading history NOPE``, ``trading chart --help``, and ``trading call
--timeout`` when the handler runs in-process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from trading.cli.main import app

SAMPLE = ["--source", "sample"]
TRADING = [sys.executable, "-m", "trading.cli.main"]


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def interrupted(argv: list[str], after: float, cwd) -> subprocess.CompletedProcess:
    """``trading ARGV`` in its own process, Ctrl-C (SIGINT) ``after`` seconds in."""
    proc = subprocess.Popen([*TRADING, *argv], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    time.sleep(after)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def test_ctrl_c_in_the_middle_of_a_drawing_is_an_interrupt_not_a_traceback(monkeypatch, tmp_path):
    """What matplotlib's Agg does when Ctrl-C lands in its C++ text layout: the interrupt
    comes out as its own ValueError. The command exits 130 without a traceback."""
    from trading.ops import charts

    def draw(*args, **kwargs):
        try:
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:
            raise ValueError("Invalid bounding box") from None

    monkeypatch.setattr(charts, "draw", draw)
    result = run("chart", "CBA", *SAMPLE, "--out", str(tmp_path / "c.png"))
    assert result.exit_code == 130, result.output
    assert "Traceback" not in result.output and "bounding box" not in result.output
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back


def test_a_real_error_while_drawing_is_still_reported_as_one(monkeypatch, tmp_path):
    from trading.ops import charts

    def draw(*args, **kwargs):
        raise ValueError("a bug")

    monkeypatch.setattr(charts, "draw", draw)
    result = run("chart", "CBA", *SAMPLE, "--out", str(tmp_path / "c.png"))
    assert isinstance(result.exception, ValueError)


@pytest.mark.parametrize("after", [0.6, 1.2, 1.8, 2.4])
def test_ctrl_c_during_a_real_chart_exits_130_or_finishes(tmp_path, after):
    done = interrupted(["chart", "CBA", *SAMPLE], after, tmp_path)
    assert "Traceback" not in done.stderr, done.stderr
    # -SIGINT: Ctrl-C while the interpreter shuts down (the chart written); Python then ends
    # by the signal itself, which a shell reports as 130 too.
    assert done.returncode in (0, 130, -signal.SIGINT), (done.returncode, done.stderr)


def test_ctrl_c_ends_events_follow_with_130(tmp_path):
    done = interrupted(["events", "-f", "--interval", "0.2"], 2.5, tmp_path)
    assert done.returncode == 130, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr


def test_history_of_a_symbol_without_predictions_does_not_say_none_are_stored():
    assert run("predict", "CBA", *SAMPLE).exit_code == 0
    result = run("history", "NOPE")
    assert result.exit_code == 0
    assert "yet" not in result.stdout
    assert "no predictions stored for NOPE" in result.stdout
    assert "since 2999-01-01" in run("history", "--since", "2999-01-01").stdout
    assert "CBA.AX" in run("history").stdout


@pytest.mark.parametrize("since", ["0001-01-01", "0001-01-01T00:00", "0001-01-01T00:00+05:00"])
def test_history_since_the_calendars_first_day_lists_everything(since):
    """Issue 27: read in Sydney time (UTC+10:05 then), the first of January of year 1 lay
    before the first moment a datetime can hold in UTC, and the answer was an internal error."""
    assert run("predict", "CBA", *SAMPLE).exit_code == 0
    result = run("history", "--since", since)
    assert result.exit_code == 0, result.output
    assert "CBA.AX" in result.stdout and "internal error" not in result.output


@pytest.mark.parametrize("since", ["9999-12-31", "9999-12-31T23:59:59.999999-05:00"])
def test_history_since_the_calendars_last_day_lists_nothing(since):
    assert run("predict", "CBA", *SAMPLE).exit_code == 0
    result = run("history", "--since", since)
    assert result.exit_code == 0, result.output
    assert f"no predictions stored since {since}" in result.stdout


def test_chart_help_says_what_json_replaces():
    text = " ".join(run("chart", "--help").output.split())
    assert "instead of a table" not in text
    assert "instead of the one-line summary" in text


def test_call_timeout_holds_in_process(monkeypatch):
    """``trading call --timeout`` where the handler runs in-process: the same exit 4 and line
    as through a socket, in about the time asked for."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__)))
    from support.slow_service import Slow

    from trading import handlers

    real = handlers.load
    monkeypatch.setitem(handlers.SERVICES, "slow", "support.slow_service")
    monkeypatch.setattr(handlers, "load", lambda name: Slow if name == "slow" else real(name))
    t0 = time.monotonic()
    result = run("call", "slow", "sleep", "seconds=1.5", "--timeout", "0.3")
    elapsed = time.monotonic() - t0
    assert result.exit_code == 4, result.output
    assert "slow did not answer within 0.3s" in result.stderr
    assert elapsed < 1.2
    time.sleep(1.5)  # the abandoned call finishes in its thread before the leak check
    quick = run("call", "slow", "sleep", "seconds=0.01", "--timeout", "5")
    assert quick.exit_code == 0 and '"slept"' in quick.stdout
