"""Alerts on a real install (issue 17): ``install.sh --user`` into a sandboxed systemd user
manager (tests/sandbox.py), a webhook on loopback started here, and ``trading-predict.service``
started by hand at a session time: the job stores predictions through the socket-activated
handlers, sends the alert from its own process (the prediction service has no network), and
exits; then the handlers exit idle and no process of the install is left.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from conftest import wait_for
from sandbox import UserManager
from test_notify import SECRET, Webhook

pytestmark = [pytest.mark.systemd, pytest.mark.slow]

CHAIN = ("prediction", "market-data", "sentiment")
IDLE_EXIT = 3
SAMPLE = "TRADING_SOURCE=sample TRADING_NEWS_SOURCE=sample"


def _install_processes(sd: UserManager) -> list[str]:
    """Command lines of every live process started from the sandbox install's venv."""
    prefix, found = str(sd.venv), []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                args = [a.decode(errors="replace")
                        for a in (entry / "cmdline").read_bytes().split(b"\0") if a]
            except OSError:
                continue
            if args and any(a.startswith(prefix) for a in args[:2]):
                found.append(" ".join(args))
    return found


def test_a_predict_job_sends_its_alert_and_exits_leaving_no_process(installed):
    sd = installed
    hook = Webhook().start()
    try:
        for name in CHAIN:
            sd.drop_in(f"trading-{name}.service", "test-sample",
                       f"[Service]\nEnvironment={SAMPLE} TRADING_IDLE_EXIT={IDLE_EXIT}\n")
        sd.drop_in("trading-predict.service", "test-notify",
                   "[Service]\nEnvironment=TRADING_NOW=2026-11-24T11:00 TRADING_NOTIFY_SYMBOLS=CBA,BHP "
                   f"TRADING_NOTIFY_SEND=all TRADING_NOTIFY_URLS="
                   f"json://alice:{SECRET}@127.0.0.1:{hook.port}/hook\n")
        sd.systemctl("daemon-reload")
        mark = len(sd.logs())
        sd.systemctl("start", "trading-predict.service", timeout=180)
        p = sd.show("trading-predict.service", "Result", "ExecMainStatus", "ActiveState")
        log = sd.logs()[mark:]
        assert p == {"Result": "success", "ExecMainStatus": "0", "ActiveState": "inactive"}, (
            p, log)
        assert "stored 7 prediction(s)" in log and "notify: 2 sent" in log, log
        assert SECRET not in log
        assert sorted(post["json"]["title"].split()[1] for post in hook.posts) == [
            "BHP.AX", "CBA.AX"]
        assert all(post["headers"].get("Idempotency-Key") for post in hook.posts)
        db = sd.home / ".config/trading/trading.db"
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT status, count(*) FROM notifications GROUP BY status"
                                ).fetchall() == [("sent", 2)]
        # The job is gone at once; the handlers it woke exit when idle: nothing is left.
        wait_for(lambda: all(sd.show(f"trading-{n}.service", "ActiveState")["ActiveState"]
                             == "inactive" for n in CHAIN), IDLE_EXIT + 20, "idle exits")
        wait_for(lambda: _install_processes(sd) == [], 10, "no process of the install")
        # A second run alerts on its own two predictions only, nothing sent twice.
        sd.systemctl("start", "trading-predict.service", timeout=180)
        assert len(hook.posts) == 4
    finally:
        hook.stop()
        sd.remove_drop_in(sd.unit_dir / "trading-predict.service.d/test-notify.conf")


THRESHOLDS = ("BEARISH", "WEAK_BEARISH", "NEUTRAL", "WEAK_BULLISH", "BULLISH")


def _thresholds(sd: UserManager, value: str) -> None:
    """The BUY/SELL threshold in every market context, by drop-in on the prediction service
    and on market-data (whose market context carries the BUY threshold); the next activation
    reads it (the handlers are made to exit first)."""
    wait_for(lambda: all(sd.show(f"trading-{n}.service", "ActiveState")["ActiveState"]
                         == "inactive" for n in CHAIN), IDLE_EXIT + 20, "idle exits")
    env = " ".join(f"TRADING_THRESHOLD_{t}={value}" for t in THRESHOLDS)
    for name in ("prediction", "market-data"):
        sd.drop_in(f"trading-{name}.service", "test-thresholds", f"[Service]\nEnvironment={env}\n")


def _job(sd: UserManager, unit: str) -> str:
    mark = len(sd.logs())
    sd.systemctl("start", unit, timeout=180)
    p = sd.show(unit, "Result", "ExecMainStatus")
    log = sd.logs()[mark:]
    assert p == {"Result": "success", "ExecMainStatus": "0"}, (p, log)
    return log


def test_a_morning_of_hand_run_predictions_then_one_job_and_one_digest(installed):
    """Issue 30 on the real units: hand-run `trading predict`s whose calls flip between two
    timer runs send nothing (the job alerts on its own run's net change against the last
    alert sent); a flip the job itself sees is one message per symbol, a SELL typed warning;
    the digest lists each symbol once."""
    sd = installed
    hook = Webhook().start()
    drop_ins = []
    try:
        for name in CHAIN:
            sd.drop_in(f"trading-{name}.service", "test-sample",
                       f"[Service]\nEnvironment={SAMPLE} TRADING_IDLE_EXIT={IDLE_EXIT}\n")
        url = f"TRADING_NOTIFY_URLS=json://127.0.0.1:{hook.port}/hook"
        drop_ins.append(sd.drop_in("trading-predict.service", "test-notify",
                                   f"[Service]\nEnvironment=TRADING_NOW=2026-11-24T11:00 {url}\n"))
        drop_ins.append(sd.drop_in("trading-outcomes.service", "test-notify",
                                   f"[Service]\nEnvironment=TRADING_NOW=2026-11-24T17:30 {url}\n"))
        _thresholds(sd, "0.95")                             # every call a HOLD
        first = _job(sd, "trading-predict.service")
        assert "stored 7 prediction(s) (7 HOLD)" in first and "notify: 0 sent" in first, first
        hand = []
        for value in ("0.05", "0.95", "0.05"):              # a morning of `trading predict`
            _thresholds(sd, value)
            out = sd.trading("predict").stdout
            hand.append(out)
        assert "BUY" in hand[0] or "SELL" in hand[0], hand[0]
        _thresholds(sd, "0.95")
        quiet = _job(sd, "trading-predict.service")
        assert "notify: 0 sent" in quiet and hook.posts == [], (quiet, hook.posts)
        _thresholds(sd, "0.05")                             # the job's own run flips
        loud = _job(sd, "trading-predict.service")
        titles = [p["json"]["title"] for p in hook.posts]
        symbols = [t.split()[1] for t in titles]
        assert len(titles) == 7 and len(set(symbols)) == 7, (titles, loud, hand)
        for p in hook.posts:
            assert p["json"]["type"] == ("warning" if p["json"]["title"].startswith("SELL")
                                         else "info"), p["json"]
        print(f"\n-- the alert run (trading-predict.service):\n{loud.strip()}")
        print("-- its messages: " + "; ".join(f"{p['json']['title']} [{p['json']['type']}]"
                                               for p in hook.posts))
        digest = _job(sd, "trading-outcomes.service")
        (post,) = [p for p in hook.posts if p["json"]["title"].startswith("ASX digest")]
        lines = post["json"]["message"].splitlines()
        calls = [ln for ln in lines if ln.startswith(("- BUY", "- SELL", "- HOLD"))]
        assert len(calls) == 7 and len({ln.split()[2] for ln in calls}) == 7, lines
        with sqlite3.connect(sd.home / ".config/trading/trading.db") as conn:
            runs = conn.execute("SELECT count(*) FROM alert_runs WHERE kind = 'job'"
                                ).fetchone()[0]  # this test's three, and any before it today
        assert runs >= 3 and lines[0].startswith(f"7 symbol(s) from {runs} job run(s) today"), (
            runs, lines)
        print(f"-- the digest (trading-outcomes.service): {post['json']['title']}\n"
              + post["json"]["message"])
        assert "notify: 1 sent" in digest, digest
    finally:
        hook.stop()
        for path in drop_ins:
            sd.remove_drop_in(path)
        for name in ("prediction", "market-data"):
            sd.remove_drop_in(sd.unit_dir / f"trading-{name}.service.d/test-thresholds.conf")
