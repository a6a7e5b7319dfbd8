"""Alerts (issue 17) against real endpoints on loopback: an HTTP server receiving ``json://``
posts and an SMTP server (aiosmtpd) receiving ``mailto://`` mail, both started here; the real
store, the real CLI (``typer.testing.CliRunner``, or a fresh interpreter where the process
itself matters: imports, a crash).

Delivery guarantees checked: an alert is queued from the prediction's committed event and
sent after; an endpoint down on one run gets the message on the next run, exactly once; a
process killed between the send and marking it sent leaves the row claimed, and a later run
sends it again with the same idempotency key (so the receiver keeps one); a claimed row is
never sent by two runs at once; a sent row is never sent again; a slow endpoint costs a run at
most the timeout. And: secrets in URLs appear in no output, log or stored row.
"""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from trading import config
from trading.cli.main import app
from trading.ops import notify
from trading.runtime.store import Store
from trading.signals import alerts, ledger, outbox

SESSION_TIME = "2026-11-27T11:00"  # a Friday in the session: the job's gate opens
SECRET = "S3cretPW-x9"
SAMPLE = {"TRADING_SOURCE": "sample", "TRADING_NEWS_SOURCE": "sample"}


# -- real endpoints on loopback ----------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Webhook:
    """A real HTTP server on loopback recording every POST (headers and JSON body).
    ``delay`` makes it slow; it can be stopped and started again on the same port."""

    def __init__(self, port: int | None = None, delay: float = 0.0) -> None:
        self.port = port or free_port()
        self.delay = delay
        self.posts: list[dict] = []
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def url(self, path: str = "hook", auth: str = "") -> str:
        return f"json://{auth}127.0.0.1:{self.port}/{path}"

    def start(self) -> Webhook:
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if hook.delay:
                    time.sleep(hook.delay)
                hook.posts.append({"path": self.path, "headers": dict(self.headers),
                                   "json": json.loads(body)})
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        http.server.ThreadingHTTPServer.allow_reuse_address = True
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(5)
            self._server = None

    def keys(self) -> list[str]:
        return [p["headers"].get("Idempotency-Key") for p in self.posts]


@pytest.fixture
def webhook():
    hook = Webhook().start()
    yield hook
    hook.stop()


@pytest.fixture
def smtp():
    """A real SMTP server (aiosmtpd) on loopback, collecting the messages it receives."""
    from aiosmtpd.controller import Controller

    class Collect:
        def __init__(self) -> None:
            self.messages: list[dict] = []

        async def handle_DATA(self, server, session, envelope):
            self.messages.append({"from": envelope.mail_from, "to": envelope.rcpt_tos,
                                  "data": envelope.content.decode("utf8", "replace")})
            return "250 OK"

    handler = Collect()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    handler.port = controller.port
    yield handler
    controller.stop()


# -- helpers -----------------------------------------------------------------------------------
def run(*args: str, env: dict[str, str] | None = None, monkeypatch=None):
    for k, v in (env or {}).items():
        monkeypatch.setenv(k, v)
    config.reset()
    return CliRunner().invoke(app, list(args))


def use(monkeypatch, **settings: str) -> config.Config:
    for k, v in settings.items():
        monkeypatch.setenv("TRADING_" + k.upper(), v)
    config.reset()
    return config.get()


def store() -> Store:
    return Store(config.get().db_path)


def predict(st: Store, symbol: str, action: str, confidence: float, *, price: float = 10.0,
            source: str = "yahoo", components: dict | None = None, run_id: str | None = None,
            created_at: str | None = None) -> int:
    """Store one prediction (and its event) as the prediction service does (a hand-run
    ``trading predict``: not in the alert stream unless :func:`job` records its run)."""
    comps = components or {"technical": 0.8 if action == "BUY" else 0.2, "sentiment": 0.6,
                           "volume": 0.55, "market": 0.5, "model": None}
    p = {"symbol": symbol, "action": action, "confidence": confidence, "price": price,
         "score": 0.6, "components": comps,
         "weights": {"technical": 0.47, "sentiment": 0.24, "volume": 0.18, "market": 0.11},
         "market_context": "NEUTRAL", "rsi": 41.0, "reasons": ["rules' own words"],
         "created_at": created_at or outbox.now_iso()}  # TRADING_NOW when a test pins it
    inputs = {"market": {"as_of": "2026-11-24", "source": source,
                         "market_context": {"context": "NEUTRAL", "trend_pct": 0.4}},
              "sentiment": {"score": 0.3, "headline_count": 5}}
    ledger.record(st, [p], {symbol: inputs}, source=source, run_id=run_id or ledger.new_run_id())
    return p["id"]


def job(st: Store, cfg, *calls, created_at: str | None = None, **kw) -> dict:
    """One ``trading job predict`` run: the calls ``(symbol, action, confidence)`` stored in
    one run, the run queued into the alert stream as the job does; returns its result."""
    rid = ledger.new_run_id()
    results = {}
    for symbol, action, confidence, *rest in calls:
        pid = predict(st, symbol, action, confidence, run_id=rid, created_at=created_at,
                      **(rest[0] if rest else {}), **kw)
        results[symbol] = {"id": pid, "symbol": symbol, "action": action}
    result = {"results": results, "errors": {},
              "predictor": {"name": "trading.signals.rules:predict"}}
    notify.queue_run(st, cfg, result, "job", now=created_at)
    return result


def later(minutes: float) -> str:
    return outbox.now_iso(datetime.now(timezone.utc) + timedelta(minutes=minutes))


# -- configuration and masking -----------------------------------------------------------------
def test_settings_parse_and_a_url_string_splits_on_whitespace_only(monkeypatch):
    cfg = use(monkeypatch, notify_urls="mailto://a.example?to=x@y.z,w@y.z  json://h:1/p",
              notify_send="SIGNALS", notify_min_confidence="0.7", notify_symbols="cba bhp")
    assert cfg["notify.urls"] == ["mailto://a.example?to=x@y.z,w@y.z", "json://h:1/p"]
    assert cfg["notify.send"] == "signals" and cfg["notify.min_confidence"] == 0.7
    assert alerts.Rules.from_config(cfg).symbols == {"CBA.AX", "BHP.AX"}
    monkeypatch.setenv("TRADING_NOTIFY_SEND", "sometimes")
    config.reset()
    with pytest.raises(config.ConfigError, match="notify.send"):
        config.get()


@pytest.mark.parametrize("url, shown", [
    ("tgram://123456:ABCsecretTOKEN/987654", "tgram://***"),
    ("discord://4174216298/JHMHI8qBe7bk2ZwO5U711o3dV", "discord://***/***"),
    ("json://user:pw@127.0.0.1:8080/hook?+X-Token=abc", "json://***@127.0.0.1:8080/***?***"),
    ("mailtos://bob:pw@mail.example.com?to=t@example.com", "mailtos://***@mail.example.com?***"),
    ("ntfy://my-private-topic", "ntfy://***"),
    ("not a url", "***"),
])
def test_mask_url_hides_everything_that_may_be_a_secret(url, shown):
    assert notify.mask_url(url) == shown


def test_scrub_removes_what_the_privacy_url_hides():
    url = f"json://user:{SECRET}@127.0.0.1:9/hook"
    text = f"failed to reach http://user:{SECRET}@127.0.0.1:9/hook ({SECRET.replace('-', '%2D')})"
    out = notify.scrub(text, url, "json://user:****@127.0.0.1:9/hook")
    assert SECRET not in out and "hook" in out


def test_config_show_masks_notify_urls(monkeypatch):
    urls = f"tgram://123456:{SECRET}/987654 json://u:{SECRET}@127.0.0.1:1/x"
    for args in (["config", "show"], ["config", "show", "--json"]):
        r = run(*args, env={"TRADING_NOTIFY_URLS": urls}, monkeypatch=monkeypatch)
        assert r.exit_code == 0, r.output
        assert SECRET not in r.output and "123456" not in r.output


# -- what is sent --------------------------------------------------------------------------------
def titles(st: Store, *, send: bool = True) -> list[str]:
    """The titles queued since the last call, marked sent (as a run that delivered them)."""
    rows = st.query("SELECT id, title FROM notifications WHERE status = 'pending' ORDER BY id")
    if send:
        with st.transaction() as db:
            db.execute("UPDATE notifications SET status = 'sent' WHERE status = 'pending'")
    return [r["title"] for r in rows]


def test_changes_alert_when_the_call_changes_against_the_last_alert_sent(monkeypatch):
    cfg = use(monkeypatch, notify_urls="json://127.0.0.1:9/x")
    st = store()
    job(st, cfg, ("CBA.AX", "HOLD", 0.4))               # HOLD, nothing told yet: nothing
    assert titles(st) == []
    job(st, cfg, ("CBA.AX", "BUY", 0.8))                # HOLD -> BUY
    assert titles(st) == ["BUY CBA.AX"]
    job(st, cfg, ("CBA.AX", "BUY", 0.82))               # still BUY: quiet
    assert titles(st) == []
    job(st, cfg, ("CBA.AX", "HOLD", 0.5), ("BHP.AX", "SELL", 0.75))  # withdrawn; a first SELL
    assert titles(st) == ["HOLD CBA.AX (BUY withdrawn)", "SELL BHP.AX"]
    job(st, cfg, ("BHP.AX", "BUY", 0.75))               # a flip
    assert titles(st) == ["BUY BHP.AX (was SELL)"]


def test_hand_run_predictions_are_never_queued_and_do_not_count(monkeypatch):
    """Issue 30: hand-run predictions between two jobs (BUY -> HOLD -> SELL -> BUY) changed
    nothing the trader was told: the next job, still BUY, sends nothing."""
    cfg = use(monkeypatch, notify_urls="json://127.0.0.1:9/x")
    st = store()
    job(st, cfg, ("ANZ.AX", "BUY", 0.8))
    assert titles(st) == ["BUY ANZ.AX"]
    for action in ("HOLD", "SELL", "HOLD", "BUY", "SELL"):
        predict(st, "ANZ.AX", action, 0.8)                # `trading predict` by hand
    job(st, cfg, ("ANZ.AX", "BUY", 0.81))
    assert titles(st) == []
    assert st.query("SELECT count(*) FROM notifications")[0][0] == 1


def test_the_net_change_is_against_the_last_alert_sent_not_the_last_queued(monkeypatch):
    """An alert still waiting (its endpoint down) when the next run speaks is superseded:
    BUY (waiting) -> HOLD sends nothing, and no stale BUY goes out later."""
    cfg = use(monkeypatch, notify_urls="json://127.0.0.1:9/x")
    st = store()
    job(st, cfg, ("CBA.AX", "BUY", 0.8))
    assert titles(st, send=False) == ["BUY CBA.AX"]       # not delivered
    job(st, cfg, ("CBA.AX", "HOLD", 0.4))                 # back where the trader was
    assert titles(st, send=False) == []
    assert [tuple(r) for r in st.query("SELECT title, status FROM notifications")] == [
        ("BUY CBA.AX", "superseded")]
    job(st, cfg, ("CBA.AX", "SELL", 0.9))
    job(st, cfg, ("CBA.AX", "SELL", 0.9))                 # the waiting SELL is replaced by one
    assert titles(st) == ["SELL CBA.AX"]
    job(st, cfg, ("CBA.AX", "SELL", 0.7))
    assert titles(st) == []


def test_min_confidence_symbols_signals_and_all(monkeypatch):
    cfg = use(monkeypatch, notify_urls="json://127.0.0.1:9/x", notify_min_confidence="0.7",
              notify_symbols="CBA")
    st = store()
    sent = []
    for calls in ((("CBA.AX", "BUY", 0.6),),           # under the minimum: not a signal
                  (("CBA.AX", "BUY", 0.8), ("BHP.AX", "BUY", 0.9)),  # BHP filtered out
                  (("CBA.AX", "HOLD", 0.3),)):
        job(st, cfg, *calls)
        sent += titles(st)
    assert sent == ["BUY CBA.AX", "HOLD CBA.AX (BUY withdrawn)"]
    cfg = use(monkeypatch, notify_urls="json://127.0.0.1:9/y", notify_send="signals",
              notify_min_confidence="0.7")
    sent = []
    for calls in ((("CBA.AX", "BUY", 0.6),), (("CBA.AX", "BUY", 0.8),),
                  (("CBA.AX", "BUY", 0.8),), (("CBA.AX", "HOLD", 0.3),)):
        job(st, cfg, *calls)
        sent += titles(st)
    assert sent == ["BUY CBA.AX", "BUY CBA.AX"]
    cfg = use(monkeypatch, notify_urls="json://127.0.0.1:9/z", notify_send="all")
    sent = []
    for a in ("HOLD", "HOLD", "BUY"):
        job(st, cfg, ("CBA.AX", a, 0.5))
        sent += titles(st)
    assert len(sent) == 3


def test_the_message_has_what_a_trader_acts_on(monkeypatch):
    use(monkeypatch)
    st = store()
    pid = predict(st, "CBA.AX", "BUY", 0.8123, price=112.35)
    row = st.query("SELECT * FROM predictions WHERE id = ?", (pid,))[0]
    m = alerts.render(row, None, alerts.Rules(link_base="https://dash.example:8787/"))
    assert m.title == "BUY CBA.AX" and m.call == "BUY" and m.notify_type == "info"
    lines = m.body.splitlines()
    assert lines[0] == "BUY CBA.AX, confidence 0.81"
    assert lines[1] == "Price 112.35, based on the Tue 24 Nov 2026 session"
    assert lines[2] == "Why:"
    assert lines[3].startswith("- technical indicators bullish (0.80; RSI 41)")
    assert "news sentiment positive (+0.30 over 5 headlines)" in m.body
    assert lines[-1] == "https://dash.example:8787/symbol/CBA.AX"
    assert "**BUY CBA.AX**" in m.markdown and "(https://dash.example:8787/symbol/CBA.AX)" in m.markdown


def test_a_withdrawal_says_what_changed_and_why_the_call_now(monkeypatch):
    """Issue 30: a withdrawn signal's message listed the reasons for the signal only."""
    use(monkeypatch)
    st = store()
    buy = predict(st, "CBA.AX", "BUY", 0.71, price=15.13,
                  components={"technical": 0.8, "sentiment": 0.7, "volume": 0.6, "market": 0.5})
    now = predict(st, "CBA.AX", "BUY", 0.55, price=14.80,
                  components={"technical": 0.45, "sentiment": 0.68, "volume": 0.4,
                              "market": 0.5})
    rows = {r["id"]: r for r in st.query("SELECT * FROM predictions")}
    m = alerts.render(rows[now], "BUY", alerts.Rules(min_confidence=0.6), rows[buy])
    assert m.title == "HOLD CBA.AX (BUY withdrawn)" and m.call == "HOLD"
    assert m.notify_type == "warning"
    lines = m.body.splitlines()
    assert lines[0] == ("HOLD CBA.AX (BUY withdrawn), BUY at confidence 0.55, below the 0.60 "
                        "minimum for a signal")
    assert lines[2] == ("HOLD CBA.AX (BUY withdrawn): the BUY of the Tue 24 Nov 2026 session "
                        "at 15.13 is withdrawn")
    assert lines[3:6] == ["What changed since the BUY:", "- BUY confidence 0.71 -> 0.55",
                          "- technical indicators 0.80 -> 0.45"]
    assert "- volume 0.60 -> 0.40" in lines
    assert "Why HOLD now:" in lines


@pytest.mark.parametrize("now, was, kind", [
    ("BUY", "HOLD", "info"), ("SELL", "HOLD", "warning"), ("SELL", "BUY", "warning"),
    ("HOLD", "BUY", "warning"), ("HOLD", "SELL", "warning"), ("BUY", "SELL", "info"),
    ("HOLD", "HOLD", "info")])
def test_apprise_types(now, was, kind):
    assert alerts.notify_type(now, was) == kind


def test_a_url_seen_for_the_first_time_gets_the_runs_calls_not_the_history(monkeypatch):
    cfg = use(monkeypatch, notify_urls="json://127.0.0.1:9/x")
    st = store()
    for action in ("BUY", "SELL", "BUY", "SELL"):
        predict(st, "CBA.AX", action, 0.8)
    job(st, cfg, ("CBA.AX", "SELL", 0.8), ("BHP.AX", "HOLD", 0.5))
    assert titles(st) == ["SELL CBA.AX"]


def test_the_alerts_stored_before_know_their_call_and_prediction(tmp_path):
    """Migration 0015: a sent alert's call (its title's first word) and prediction (its
    event's) are the next run's baseline; the cursors are gone."""
    import sqlite3

    from trading.runtime.store import _statements, migrations

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        for number, sql in migrations():
            if number <= 13:
                for statement in _statements(open(sql).read()):
                    conn.execute(statement)
        conn.execute("PRAGMA user_version = 13")
        conn.execute("INSERT INTO events (id, type, payload, created_at) VALUES "
                     "(41, 'prediction', '{\"id\": 7, \"symbol\": \"CBA.AX\"}', 'x')")
        conn.execute("INSERT INTO notifications (kind, ref, url_hash, target, symbol, title, "
                     "body, markdown, created_at, next_attempt_at, status) VALUES "
                     "('prediction', '41', 'h', 'json://***', 'CBA.AX', 'SELL CBA.AX (was BUY)',"
                     " 'b', 'm', 'x', 'x', 'sent')")
    st = Store(path)
    try:
        row = st.query("SELECT call, prediction_id, notify_type, status FROM notifications")[0]
        assert tuple(row) == ("SELL", 7, "info", "sent")
        with st.transaction() as db:
            assert tuple(alerts.told(db, "h", "CBA.AX")) == ("SELL", 7)
        assert not st.query("SELECT name FROM sqlite_master WHERE name = 'notify_cursors'")
    finally:
        st.close()


THRESHOLDS = ("TRADING_THRESHOLD_BEARISH", "TRADING_THRESHOLD_BULLISH",
              "TRADING_THRESHOLD_NEUTRAL")


def thresholds(monkeypatch, value: str) -> None:
    """The rules' BUY/SELL threshold in every market context: on the sample data at
    SESSION_TIME, 0.4 makes CBA and NAB BUYs and MQG a SELL that 0.6 keeps HOLDs (COL and BHP
    are SELLs at both)."""
    for name in THRESHOLDS:
        monkeypatch.setenv(name, value)


def posted(hook: Webhook, since: int = 0) -> list[tuple[str, str]]:
    return [(p["json"]["title"], p["json"]["type"]) for p in hook.posts[since:]]


def test_hand_run_predictions_between_two_jobs_send_nothing_and_each_symbol_once(
        monkeypatch, webhook):
    """Issue 30, as found: after a few hand-run `trading predict`s the next job sent 11
    messages, "HOLD ANZ.AX (was SELL)" and "SELL ANZ.AX (was HOLD)" among them."""
    env = {**SAMPLE, "TRADING_NOW": SESSION_TIME, "TRADING_NOTIFY_URLS": webhook.url()}
    thresholds(monkeypatch, "0.6")
    first = run("job", "predict", env=env, monkeypatch=monkeypatch)
    assert first.exit_code == 0, first.output
    told = len(webhook.posts)
    assert told and f"notify: {told} sent" in first.stdout
    for value in ("0.4", "0.6", "0.4"):                    # the calls flip, by hand
        thresholds(monkeypatch, value)
        hand = run("predict", env=env, monkeypatch=monkeypatch)
        assert hand.exit_code == 0 and "SELL" in hand.stdout, hand.output
        assert "notify" not in hand.output
    assert store().query("SELECT count(*) FROM notifications WHERE status != 'sent'"
                         )[0][0] == 0                        # nothing queued by hand
    thresholds(monkeypatch, "0.6")
    same = run("job", "predict", env=env, monkeypatch=monkeypatch)
    assert "notify: 0 sent" in same.stdout and len(webhook.posts) == told
    thresholds(monkeypatch, "0.4")
    flipped = run("job", "predict", env=env, monkeypatch=monkeypatch)
    new = posted(webhook, told)
    assert sorted(new) == [("BUY CBA.AX", "info"), ("BUY NAB.AX", "info"),
                           ("SELL MQG.AX", "warning")], flipped.output
    thresholds(monkeypatch, "0.6")
    run("job", "predict", env=env, monkeypatch=monkeypatch)
    assert sorted(posted(webhook, told + 3)) == [
        ("HOLD CBA.AX (BUY withdrawn)", "warning"), ("HOLD MQG.AX (SELL withdrawn)", "warning"),
        ("HOLD NAB.AX (BUY withdrawn)", "warning")]
    withdrawal = webhook.posts[-1]["json"]["message"]
    assert "What changed since the SELL:" in withdrawal and "Why HOLD now:" in withdrawal


def test_predict_notify_sends_at_once_and_the_job_goes_on_from_it(monkeypatch, webhook):
    env = {**SAMPLE, "TRADING_NOW": SESSION_TIME, "TRADING_NOTIFY_URLS": webhook.url(),
           "TRADING_SYMBOLS": "MQG,CBA"}
    thresholds(monkeypatch, "0.4")
    now = run("predict", "--notify", env=env, monkeypatch=monkeypatch)
    assert now.exit_code == 0, now.output
    assert "notify: 2 sent" in now.stdout
    assert sorted(posted(webhook)) == [("BUY CBA.AX", "info"), ("SELL MQG.AX", "warning")]
    again = run("job", "predict", env=env, monkeypatch=monkeypatch)   # nothing new
    assert "notify: 0 sent" in again.stdout and len(webhook.posts) == 2
    bad = run("predict", "--notify", "--source", "csv:/nowhere", env=env,
              monkeypatch=monkeypatch)
    assert bad.exit_code == 2 and "alerts come from the configured source" in bad.output
    other = run("predict", "--notify", "--predictor", "momentum:EnhancedMarketAwarePredictor",
                env=env, monkeypatch=monkeypatch)
    assert other.exit_code == 2 and "alerts come from the configured predictor" in other.output
    assert len(webhook.posts) == 2
    monkeypatch.delenv("TRADING_NOTIFY_URLS", raising=False)
    none = run("predict", "--notify", env={**SAMPLE}, monkeypatch=monkeypatch)
    assert none.exit_code == 2 and "no notify.urls" in none.output


def test_nothing_for_a_symbol_the_run_failed_on(monkeypatch, webhook):
    """Issue 30: a job sent a BUY for a symbol it had failed to predict (a hand-run
    prediction's, queued for the job). The predictor here says what a file tells it for
    WBC.AX, or raises."""
    conf = Path(os.environ["TRADING_CONFIG"])
    (conf.parent / "predictors").mkdir(exist_ok=True)
    mode = conf.parent / "wbc-mode"
    (conf.parent / "predictors" / "moody.py").write_text(
        "from pathlib import Path\n"
        "class Moody:\n"
        "    def calculate_confidence(self, symbol, tech_data, news_data, volume_data,\n"
        "                             market_data):\n"
        f"        said = Path({str(mode)!r}).read_text() if symbol == 'WBC.AX' else 'HOLD'\n"
        "        if said == 'RAISE':\n"
        "            raise RuntimeError('no data today')\n"
        "        return {'action': said, 'confidence': 0.8}\n")
    conf.write_text('predictor = "moody:Moody"\n')
    env = {**SAMPLE, "TRADING_NOW": SESSION_TIME, "TRADING_NOTIFY_URLS": webhook.url(),
           "TRADING_SYMBOLS": "CBA,WBC"}
    mode.write_text("HOLD")
    first = run("job", "predict", env=env, monkeypatch=monkeypatch)
    assert first.exit_code == 0 and "stored 2 prediction(s)" in first.stdout, first.output
    mode.write_text("BUY")
    hand = run("predict", env=env, monkeypatch=monkeypatch)  # by hand: WBC BUY
    assert "WBC.AX BUY" in hand.stdout, hand.output
    mode.write_text("RAISE")
    failed = run("job", "predict", env=env, monkeypatch=monkeypatch)
    assert "stored 1 prediction(s)" in failed.stdout, failed.output
    assert "WBC.AX: " in failed.stdout and "no data today" in failed.stdout
    assert "notify: 0 sent" in failed.stdout and webhook.posts == []


# -- delivery against real endpoints -------------------------------------------------------------
def test_two_predict_runs_where_the_call_changes_give_exactly_one_alert(monkeypatch, webhook):
    """The issue's "done when", through the real CLI and the real handlers (in-process)."""
    env = {**SAMPLE, "TRADING_NOW": SESSION_TIME, "TRADING_SYMBOLS": "CBA",
           "TRADING_NOTIFY_URLS": webhook.url(auth=f"user:{SECRET}@"),
           "TRADING_NOTIFY_LINK_BASE": "http://127.0.0.1:8787"}
    first = run("job", "predict", env=env, monkeypatch=monkeypatch)
    assert first.exit_code == 0, first.output
    assert "CBA.AX HOLD" in first.stdout and "notify: 0 sent" in first.stdout
    # The same data, a lower BUY threshold for the sample's market context: HOLD -> BUY.
    monkeypatch.setenv("TRADING_THRESHOLD_BEARISH", "0.4")
    second = run("job", "predict", env=env, monkeypatch=monkeypatch)
    assert second.exit_code == 0, second.output
    assert "CBA.AX BUY" in second.stdout and "notify: 1 sent" in second.stdout
    third = run("job", "predict", env=env, monkeypatch=monkeypatch)  # BUY again: quiet
    assert "notify: 0 sent" in third.stdout
    assert len(webhook.posts) == 1
    post = webhook.posts[0]
    msg = post["json"]["message"]
    assert post["json"]["title"] == "BUY CBA.AX"  # the first alert for it: nothing was told
    assert post["json"]["type"] == "info"
    assert msg.startswith("BUY CBA.AX, confidence 0.4")
    assert "Price 14.96, based on the " in msg and "(sample data)" in msg
    assert "Why:\n- technical indicators bullish" in msg
    assert "http://127.0.0.1:8787/symbol/CBA.AX" in msg
    key = post["headers"]["Idempotency-Key"]
    assert key.startswith("trading-p") and msg.endswith(f"ref {key}")
    for out in (first.output, second.output, third.output):
        assert SECRET not in out


def test_an_endpoint_down_on_the_first_run_gets_the_message_on_the_next_exactly_once(
        monkeypatch, capfd):
    hook = Webhook()  # not started: the port refuses
    cfg = use(monkeypatch, notify_urls=hook.url(auth=f"u:{SECRET}@"))
    st = store()
    job(st, cfg, ("CBA.AX", "BUY", 0.8))
    down = notify.deliver(st, cfg)
    assert (down["sent"], down["waiting"]) == (0, 1)
    (error,) = down["errors"].values()
    assert "127.0.0.1" in error and SECRET not in error
    status = run("notify", "status", "--json", monkeypatch=monkeypatch)
    state = json.loads(status.stdout)
    assert state["counts"]["pending"] == 1
    row = state["rows"][0]
    assert row["attempts"] == 1 and row["last_error"] and SECRET not in status.output
    hook.start()
    try:
        up = notify.deliver(st, cfg)
        again = notify.deliver(st, cfg, now=later(120))
    finally:
        hook.stop()
    assert (up["sent"], again["sent"]) == (1, 0)
    assert len(hook.posts) == 1
    assert st.query("SELECT status, attempts FROM notifications")[0][:] == ("sent", 2)
    assert SECRET not in capfd.readouterr().err


def test_a_crash_between_sending_and_marking_sent_does_not_lose_the_message(monkeypatch,
                                                                            webhook):
    """A real process is killed (os._exit) right after the service accepted the message."""
    cfg = use(monkeypatch, notify_urls=webhook.url(), notify_timeout="2")
    st = store()
    job(st, cfg, ("CBA.AX", "BUY", 0.8))
    script = ("import os, sys\n"
              "from trading import config\n"
              "from trading.ops import notify\n"
              "from trading.runtime.store import Store\n"
              "from trading.signals import outbox\n"
              "outbox.mark_sent = lambda *a, **k: os._exit(9)  # die before marking\n"
              # this process's moment (a clock shim starts each interpreter at one moment)
              "notify.deliver(Store(config.get().db_path), config.get(),"
              f" now={outbox.now_iso()!r})\n")
    r = subprocess.run([sys.executable, "-c", script], env=os.environ.copy(), timeout=60)
    assert r.returncode == 9
    assert len(webhook.posts) == 1
    row = st.query("SELECT status, attempts FROM notifications")[0]
    assert tuple(row) == ("sending", 1)
    # A run while the claim may still be a live sender's leaves it alone ...
    assert notify.deliver(st, cfg)["sent"] == 0 and len(webhook.posts) == 1
    # ... and once the claim has expired, the message goes again with the same key.
    expired = outbox.claim_expiry(2) / 60 + 1
    assert notify.deliver(st, cfg, now=later(expired))["sent"] == 1
    assert notify.deliver(st, cfg, now=later(expired + 5))["sent"] == 0
    assert len(webhook.posts) == 2 and len(set(webhook.keys())) == 1
    assert tuple(st.query("SELECT status, attempts FROM notifications")[0]) == ("sent", 2)


def test_a_claimed_row_is_sent_by_one_run_only(monkeypatch):
    use(monkeypatch)
    st = store()
    outbox.plan_run(st, [("h", "json://x")], alerts.Rules(), [predict(st, "CBA.AX", "BUY", 0.8)])
    (row,) = outbox.due(st, ["h"], timeout=10)
    assert outbox.claim(st, row["id"], "a", timeout=10) is not None
    assert outbox.claim(st, row["id"], "b", timeout=10) is None
    assert outbox.due(st, ["h"], timeout=10) == []
    assert outbox.mark_sent(st, row["id"], "b") is False      # not b's claim
    assert outbox.mark_sent(st, row["id"], "a") is True
    assert outbox.due(st, ["h"], timeout=10, now=later(60 * 23)) == []  # sent: never again


def test_backoff_then_given_up(monkeypatch):
    use(monkeypatch)
    st = store()
    outbox.plan_run(st, [("h", "json://x")], alerts.Rules(), [predict(st, "CBA.AX", "BUY", 0.8)])
    waits = []
    now = datetime.now(timezone.utc)
    for _ in range(outbox.MAX_ATTEMPTS):
        (row,) = outbox.due(st, ["h"], timeout=10, now=outbox.now_iso(now))
        outbox.claim(st, row["id"], "t", timeout=10, now=outbox.now_iso(now))
        status = outbox.mark_failed(st, row["id"], "t", "boom", now=outbox.now_iso(now))
        nxt = datetime.fromisoformat(st.query("SELECT next_attempt_at FROM notifications")[0][0])
        waits.append(round((nxt - now).total_seconds()))
        now = nxt
    assert waits[:5] == [0, 300, 900, 1800, 3600] and status == "failed"


@pytest.mark.slow
def test_a_slow_endpoint_costs_a_run_one_timeout(monkeypatch):
    hook = Webhook(delay=3.0).start()
    try:
        cfg = use(monkeypatch, notify_urls=hook.url(), notify_timeout="0.5",
                  notify_send="all")
        st = store()
        job(st, cfg, *[(s, "BUY", 0.8) for s in ("CBA.AX", "BHP.AX", "NAB.AX")])
        t = time.monotonic()
        result = notify.deliver(st, cfg)
        took = time.monotonic() - t
    finally:
        hook.stop()
    assert took < 2.5, took  # one URL, one timeout; the other two wait for the next run
    assert result["sent"] == 0 and result["waiting"] == 3


def test_mail_reaches_a_real_smtp_server(monkeypatch, smtp):
    url = (f"mailto://127.0.0.1:{smtp.port}?from=alerts@example.com&to=trader@example.com")
    cfg = use(monkeypatch, notify_urls=url)
    st = store()
    job(st, cfg, ("WBC.AX", "SELL", 0.77, {"price": 31.5}))
    assert notify.deliver(st, cfg)["sent"] == 1
    (mail,) = smtp.messages
    assert mail["to"] == ["trader@example.com"]
    assert "SELL WBC.AX" in mail["data"] and "31.50" in mail["data"]


def test_notify_test_prints_one_line_per_url(monkeypatch, webhook, smtp):
    down = Webhook()
    urls = " ".join([webhook.url(), down.url(auth=f"u:{SECRET}@"),
                     f"mailto://127.0.0.1:{smtp.port}?from=a@example.com&to=t@example.com",
                     "nosuchscheme://x"])
    r = run("notify", "test", env={"TRADING_NOTIFY_URLS": urls}, monkeypatch=monkeypatch)
    assert r.exit_code == 1
    lines = r.stdout.splitlines()
    assert len(lines) == 4
    assert lines[0] == f"json://127.0.0.1:{webhook.port}/***: delivered"
    assert lines[1].startswith(f"json://***@127.0.0.1:{down.port}/***: failed: ")
    assert lines[2].endswith(": delivered") and lines[2].startswith("mailto://")
    assert lines[3].startswith("nosuchscheme://***: failed: not a valid Apprise URL")
    assert SECRET not in r.output
    assert len(webhook.posts) == 1 and len(smtp.messages) == 1


def test_the_daily_digest_after_outcomes(monkeypatch, webhook):
    """Issue 30: one line per symbol (a standing BUY listed once, not once per run), its latest
    call, price and change on the day; hand-run predictions and replays are not in it."""
    # Mid-session in Sydney: "today" is the Sydney day, and the wall clock made this fail
    # from 00:00 to 00:40 Sydney time, when the run 40 minutes earlier was yesterday's.
    monkeypatch.setenv("TRADING_NOW", "2026-11-24T13:00:00+11:00")
    cfg = use(monkeypatch, notify_urls=webhook.url())
    st = store()
    now = datetime.fromisoformat("2026-11-24T13:00:00+11:00").astimezone(timezone.utc)
    yesterday = (now - timedelta(days=1)).isoformat()
    job(st, cfg, ("CBA.AX", "BUY", 0.71, {"price": 15.0}), created_at=yesterday)
    first = (now - timedelta(minutes=40)).isoformat()
    job(st, cfg, ("CBA.AX", "BUY", 0.71, {"price": 15.1}), ("BHP.AX", "BUY", 0.8),
        ("NAB.AX", "HOLD", 0.5, {"price": 20.0}), created_at=first)
    for _ in range(4):                                     # a standing BUY, run after run
        pid = job(st, cfg, ("CBA.AX", "BUY", 0.71, {"price": 15.13}), ("BHP.AX", "HOLD", 0.4),
                  ("NAB.AX", "SELL", 0.8, {"price": 19.0}))["results"]["NAB.AX"]["id"]
    predict(st, "WBC.AX", "BUY", 0.9)                      # by hand: not in the digest
    predict(st, "CBA.AX", "SELL", 0.9)
    ledger.record(st, [{"symbol": "ANZ.AX", "action": "BUY", "confidence": 0.9, "price": 1.0,
                        "created_at": now.isoformat()}], {}, source="csv:/x",
                  run_id="replay1", origin="replay")
    with st.transaction() as db:  # an outcome scored today of a stream prediction
        db.execute("INSERT INTO outcomes VALUES (?, 1, '2026-11-23', '2026-11-24', 10, 9.9,"
                   " -0.01, 0.002, 1, ?)", (pid, outbox.now_iso()))
    today = ledger.sydney_date(outbox.now_iso())
    day = date.fromisoformat(today)
    notify.deliver(st, cfg, digest_day=day)
    notify.deliver(st, cfg, digest_day=day)  # the outcomes job again: no second digest
    digests = [p for p in webhook.posts if p["json"]["title"].startswith("ASX digest")]
    assert len(digests) == 1
    assert digests[0]["json"]["type"] == "info"
    text = digests[0]["json"]["message"]
    lines = text.splitlines()
    assert lines[0] == ("3 symbol(s) from 5 job run(s) today (predictor rules); 2 BUY/SELL "
                        "call(s) at the latest run")
    assert lines[1:4] == [f"- HOLD BHP.AX 0.40 at 10.00, +0.0% on the day (was BUY at "
                          f"{alerts._sydney_time(first)})",
                          "- BUY CBA.AX 0.71 at 15.13, +0.9% on the day",
                          f"- SELL NAB.AX 0.80 at 19.00, -5.0% on the day (was HOLD at "
                          f"{alerts._sydney_time(first)})"]
    assert text.count("CBA.AX") == 1 and "WBC.AX" not in text and "ANZ.AX" not in text
    assert "Outcomes scored today: 1, 1 right (100%)" in text
    assert "- NAB.AX SELL after 1: -1.00% right" in text
    assert ("Hit rates so far (live predictions of rules):\n- 1 session: BUY/SELL 100% of 1 "
            "[21%-100%] (too few to judge)") in text


def test_a_failing_accuracy_report_does_not_stop_the_digest(monkeypatch, webhook):
    from trading.signals import outcomes

    def broken(*args, **kwargs):
        raise IndexError("index 20 is out of bounds")

    monkeypatch.setattr(outcomes, "accuracy", broken)
    cfg = use(monkeypatch, notify_urls=webhook.url())
    st = store()
    job(st, cfg, ("CBA.AX", "BUY", 0.71))
    notify.deliver(st, cfg, digest_day=date.fromisoformat(ledger.sydney_date(outbox.now_iso())))
    digest = webhook.posts[-1]["json"]
    assert digest["title"].startswith("ASX digest") and "- BUY CBA.AX 0.71" in digest["message"]
    assert "Hit rates so far: not available today" in digest["message"]


def test_the_outcomes_job_sends_one_digest_a_day(monkeypatch, webhook):
    env = {**SAMPLE, "TRADING_NOW": "2026-11-24T17:30", "TRADING_NOTIFY_URLS": webhook.url()}
    for _ in range(2):
        r = run("job", "outcomes", env=env, monkeypatch=monkeypatch)
        assert r.exit_code == 0, r.output
    assert [p["json"]["title"][:10] for p in webhook.posts] == ["ASX digest"]


# -- costs and secrets ---------------------------------------------------------------------------
def test_apprise_is_imported_only_to_send(monkeypatch, webhook):
    """A fresh interpreter: the CLI, the handlers and a job with nothing to send leave apprise
    out; sending imports it."""
    monkeypatch.setenv("TRADING_NOTIFY_URLS", webhook.url())
    for k, v in {**SAMPLE, "TRADING_SYMBOLS": "CBA"}.items():
        monkeypatch.setenv(k, v)
    probe = ("import sys\n"
             "import trading.cli.main, trading.handlers.prediction, trading.signals.outbox\n"
             "from trading.cli.main import main\n"
             "assert 'apprise' not in sys.modules, 'imported by a module top'\n"
             "for when in sys.argv[1:]:\n"
             "    import os; os.environ['TRADING_NOW'] = when\n"
             "    from trading import config; config.reset()\n"
             "    main(['job', 'predict'])\n"
             "print('apprise' in sys.modules)\n")
    closed = subprocess.run([sys.executable, "-c", probe, "2026-12-25T11:00"],
                            capture_output=True, text=True, timeout=120)
    assert closed.stdout.splitlines()[-1] == "False", closed.stderr
    quiet = subprocess.run([sys.executable, "-c", probe, SESSION_TIME],  # first call: HOLD
                           capture_output=True, text=True, timeout=120)
    assert quiet.stdout.splitlines()[-1] == "False", quiet.stderr
    monkeypatch.setenv("TRADING_NOTIFY_SEND", "all")
    sends = subprocess.run([sys.executable, "-c", probe, SESSION_TIME],
                           capture_output=True, text=True, timeout=120)
    assert sends.stdout.splitlines()[-1] == "True", sends.stderr
    assert len(webhook.posts) == 1


TOKEN, TOPIC, QTOKEN = "pathTOKEN7f3a", "privTopic55e1", "qryTOKEN9b2c"


def test_a_token_in_the_path_or_query_appears_in_no_output_log_or_stored_row(
        monkeypatch, webhook, caplog):
    """Issue 27: a webhook's path (``json://host/hook/TOKEN``), an ntfy topic and a query
    token are secrets as much as a password: the outbox, the job's log line, ``notify status``
    and ``notify test`` name each URL by its label (scheme, host, port), never the URL."""
    down = Webhook()
    urls = [webhook.url(path=f"hook/{TOKEN}"),
            down.url(path="hook") + f"?token={QTOKEN}",
            f"ntfy://127.0.0.1:{down.port}/{TOPIC}"]
    env = {**SAMPLE, "TRADING_NOW": SESSION_TIME, "TRADING_SYMBOLS": "CBA",
           "TRADING_NOTIFY_URLS": " ".join(urls), "TRADING_NOTIFY_SEND": "all",
           "TRADING_LOG_LEVEL": "DEBUG"}
    caplog.set_level("DEBUG")
    outputs = [run("job", "predict", env=env, monkeypatch=monkeypatch),
               run("job", "predict", "--json", env=env, monkeypatch=monkeypatch),
               run("notify", "status", env=env, monkeypatch=monkeypatch),
               run("notify", "status", "--json", env=env, monkeypatch=monkeypatch),
               run("notify", "test", env=env, monkeypatch=monkeypatch),
               run("notify", "test", "--json", env=env, monkeypatch=monkeypatch),
               run("config", "show", env=env, monkeypatch=monkeypatch)]
    assert webhook.posts and webhook.posts[0]["path"] == f"/hook/{TOKEN}"  # it was used
    for r in outputs:
        for secret in (TOKEN, TOPIC, QTOKEN):
            assert secret not in r.output, r.output
    status = outputs[2].output
    assert f"json://127.0.0.1:{webhook.port}/***" in status
    assert "failed" in outputs[4].output and f"ntfy://127.0.0.1:{down.port}/***" in outputs[4].output
    assert f"to json://127.0.0.1:{down.port}/***?***" in caplog.text  # the job's log line
    for secret in (TOKEN, TOPIC, QTOKEN):
        assert secret not in caplog.text
    db = Path(config.get().db_path)
    targets = {r["target"] for r in Store(db).query("SELECT target FROM notifications")}
    assert targets == {f"json://127.0.0.1:{webhook.port}/***",
                       f"json://127.0.0.1:{down.port}/***?***",
                       f"ntfy://127.0.0.1:{down.port}/***"}
    for path in db.parent.glob(db.name + "*"):
        for secret in (TOKEN, TOPIC, QTOKEN):
            assert secret.encode() not in path.read_bytes()


def test_urls_whose_labels_are_the_same_are_told_apart_by_their_place(monkeypatch):
    cfg = use(monkeypatch, notify_urls=f"ntfy://ntfy.sh/{TOPIC} json://h.example/a "
              f"ntfy://ntfy.sh/{TOKEN}")
    assert [t.label for t in notify.targets(cfg)] == [
        "ntfy://ntfy.sh/*** #1", "json://h.example/***", "ntfy://ntfy.sh/*** #3"]


def test_the_targets_stored_before_labels_keep_their_scheme_only(tmp_path):
    """Migration 0013: rows written with Apprise's privacy=True form (path and query kept)."""
    import sqlite3

    from trading.runtime.store import _statements, migrations

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        for number, sql in migrations():
            if number <= 12:
                for statement in _statements(open(sql).read()):
                    conn.execute(statement)
        conn.execute("PRAGMA user_version = 12")
        for i, target in enumerate([f"json://127.0.0.1:9/hook/{TOKEN}", f"ntfy://ntfy.sh/{TOPIC}",
                                    "tgram://1...f/987654/", "***"]):
            conn.execute("INSERT INTO notifications (kind, ref, url_hash, target, title, body,"
                         " markdown, created_at, next_attempt_at) VALUES ('digest', ?, 'h', ?,"
                         " 't', 'b', 'm', 'x', 'x')", (str(i), target))
    st = Store(path)
    try:
        assert [r["target"] for r in st.query("SELECT target FROM notifications ORDER BY id")] \
            == ["json://***", "ntfy://***", "tgram://***", "***"]
    finally:
        st.close()


def test_secrets_appear_in_no_output_log_or_stored_row(monkeypatch, webhook, caplog):
    down = Webhook()
    urls = [webhook.url(path="hook", auth=f"alice:{SECRET}@"),
            down.url(path="x", auth=f"bob:{SECRET}@")]
    env = {**SAMPLE, "TRADING_NOW": SESSION_TIME, "TRADING_SYMBOLS": "CBA",
           "TRADING_NOTIFY_URLS": " ".join(urls), "TRADING_NOTIFY_SEND": "all",
           "TRADING_LOG_LEVEL": "DEBUG"}
    caplog.set_level("DEBUG")
    outputs = [run("job", "predict", env=env, monkeypatch=monkeypatch),
               run("job", "predict", "--json", env=env, monkeypatch=monkeypatch),
               run("notify", "status", env=env, monkeypatch=monkeypatch),
               run("notify", "status", "--json", env=env, monkeypatch=monkeypatch),
               run("notify", "test", env=env, monkeypatch=monkeypatch),
               run("config", "show", env=env, monkeypatch=monkeypatch)]
    assert len(webhook.posts) == 3  # two alerts and the test message
    for r in outputs:
        assert SECRET not in r.output
    assert SECRET not in caplog.text
    db = Path(config.get().db_path)
    for path in db.parent.glob(db.name + "*"):
        assert SECRET.encode() not in path.read_bytes()
