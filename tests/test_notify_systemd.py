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
