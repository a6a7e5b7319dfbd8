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
            source: str = "yahoo", components: dict | None = None) -> int:
    """Store one prediction (and its event) as the prediction service does."""
    comps = components or {"technical": 0.8 if action == "BUY" else 0.2, "sentiment": 0.6,
                           "volume": 0.55, "market": 0.5, "model": None}
    p = {"symbol": symbol, "action": action, "confidence": confidence, "price": price,
         "score": 0.6, "components": comps,
         "weights": {"technical": 0.47, "sentiment": 0.24, "volume": 0.18, "market": 0.11},
         "market_context": "NEUTRAL", "rsi": 41.0, "reasons": ["rules' own words"],
         "created_at": datetime.now(timezone.utc).isoformat()}
    inputs = {"market": {"as_of": "2026-11-24", "source": source,
                         "market_context": {"context": "NEUTRAL", "trend_pct": 0.4}},
              "sentiment": {"score": 0.3, "headline_count": 5}}
    ledger.record(st, [p], {symbol: inputs}, source=source, run_id=ledger.new_run_id())
    return p["id"]


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
def planned(st: Store, rules: alerts.Rules) -> list:
    outbox.plan(st, [("h", "json://x")], rules, start=0)
    return st.query("SELECT title FROM notifications ORDER BY id")


def test_changes_alert_when_the_call_changes_and_only_then(monkeypatch):
    use(monkeypatch)
    st = store()
    predict(st, "CBA.AX", "HOLD", 0.4)             # first, HOLD: nothing to say
    predict(st, "CBA.AX", "BUY", 0.8)              # HOLD -> BUY
    predict(st, "CBA.AX", "BUY", 0.82)             # still BUY: quiet
    predict(st, "CBA.AX", "HOLD", 0.5)             # BUY withdrawn
    predict(st, "BHP.AX", "SELL", 0.75)            # a first SELL is a change from HOLD
    predict(st, "BHP.AX", "SELL", 0.75, source="sample")  # another source: its own history
    titles = [r["title"] for r in planned(st, alerts.Rules("changes"))]
    assert titles == ["BUY CBA.AX (was HOLD)", "HOLD CBA.AX (was BUY)", "SELL BHP.AX",
                      "SELL BHP.AX"]


def test_min_confidence_symbols_signals_and_all(monkeypatch):
    use(monkeypatch)
    st = store()
    predict(st, "CBA.AX", "BUY", 0.6)              # under the minimum: not a signal
    predict(st, "CBA.AX", "BUY", 0.8)              # crosses it: a change
    predict(st, "BHP.AX", "BUY", 0.9)              # filtered out by symbol
    predict(st, "CBA.AX", "HOLD", 0.3)
    assert [r["title"] for r in planned(st, alerts.Rules("changes", 0.7, ["CBA"]))] == [
        "BUY CBA.AX (was HOLD)", "HOLD CBA.AX (was BUY)"]
    st2 = Store(Path(config.get().db_path).with_name("b.db"))
    predict(st2, "CBA.AX", "BUY", 0.6)
    predict(st2, "CBA.AX", "BUY", 0.8)
    predict(st2, "CBA.AX", "HOLD", 0.3)
    assert len(planned(st2, alerts.Rules("signals", 0.7))) == 1
    st3 = Store(Path(config.get().db_path).with_name("c.db"))
    for a in ("HOLD", "HOLD", "BUY"):
        predict(st3, "CBA.AX", a, 0.5)
    assert len(planned(st3, alerts.Rules("all"))) == 3


def test_the_message_has_what_a_trader_acts_on(monkeypatch):
    use(monkeypatch)
    st = store()
    pid = predict(st, "CBA.AX", "BUY", 0.8123, price=112.35)
    row = st.query("SELECT * FROM predictions WHERE id = ?", (pid,))[0]
    m = alerts.render(row, None, alerts.Rules(link_base="https://dash.example:8787/"))
    assert m.title == "BUY CBA.AX"
    lines = m.body.splitlines()
    assert lines[0] == "BUY CBA.AX, confidence 0.81"
    assert lines[1] == "Price 112.35, based on the Tue 24 Nov 2026 session"
    assert lines[2] == "Why:"
    assert lines[3].startswith("- technical indicators bullish (0.80; RSI 41)")
    assert "news sentiment positive (+0.30 over 5 headlines)" in m.body
    assert lines[-1] == "https://dash.example:8787/symbol/CBA.AX"
    assert "**BUY CBA.AX**" in m.markdown and "(https://dash.example:8787/symbol/CBA.AX)" in m.markdown


def test_a_url_seen_for_the_first_time_does_not_get_the_history(monkeypatch):
    use(monkeypatch)
    st = store()
    predict(st, "CBA.AX", "BUY", 0.8)
    assert outbox.plan(st, [("new", "json://x")], alerts.Rules()) == 0
    predict(st, "CBA.AX", "SELL", 0.8)
    assert outbox.plan(st, [("new", "json://x")], alerts.Rules()) == 1


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
    assert post["json"]["title"] == "BUY CBA.AX (was HOLD)"
    assert msg.startswith("BUY CBA.AX (was HOLD), confidence 0.4")
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
    start = outbox.floor(st)
    predict(st, "CBA.AX", "BUY", 0.8)
    down = notify.deliver(st, cfg, start=start)
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
    start = outbox.floor(st)
    predict(st, "CBA.AX", "BUY", 0.8)
    script = ("import os, sys\n"
              "from trading import config\n"
              "from trading.ops import notify\n"
              "from trading.runtime.store import Store\n"
              "from trading.signals import outbox\n"
              "outbox.mark_sent = lambda *a, **k: os._exit(9)  # die before marking\n"
              f"notify.deliver(Store(config.get().db_path), config.get(), start={start})\n")
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
    predict(st, "CBA.AX", "BUY", 0.8)
    outbox.plan(st, [("h", "json://x")], alerts.Rules(), start=0)
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
    predict(st, "CBA.AX", "BUY", 0.8)
    outbox.plan(st, [("h", "json://x")], alerts.Rules(), start=0)
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
        start = outbox.floor(st)
        for s in ("CBA.AX", "BHP.AX", "NAB.AX"):
            predict(st, s, "BUY", 0.8)
        t = time.monotonic()
        result = notify.deliver(st, cfg, start=start)
        took = time.monotonic() - t
    finally:
        hook.stop()
    assert took < 2.5, took  # one URL, one timeout; the other two wait for the next run
    assert result["sent"] == 0 and result["waiting"] == 3


def test_mail_reaches_a_real_smtp_server(monkeypatch, smtp):
    url = (f"mailto://127.0.0.1:{smtp.port}?from=alerts@example.com&to=trader@example.com")
    cfg = use(monkeypatch, notify_urls=url)
    st = store()
    start = outbox.floor(st)
    predict(st, "WBC.AX", "SELL", 0.77, price=31.5)
    assert notify.deliver(st, cfg, start=start)["sent"] == 1
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
    cfg = use(monkeypatch, notify_urls=webhook.url())
    st = store()
    for s, a in (("CBA.AX", "BUY"), ("BHP.AX", "HOLD"), ("NAB.AX", "SELL")):
        pid = predict(st, s, a, 0.8)
    with st.transaction() as db:  # an outcome scored today
        db.execute("INSERT INTO outcomes VALUES (?, 1, '2026-11-23', '2026-11-24', 10, 9.9,"
                   " -0.01, 0.002, 1, ?)", (pid, outbox.now_iso()))
    today = ledger.sydney_date(outbox.now_iso())
    day = date.fromisoformat(today)
    notify.deliver(st, cfg, digest_day=day)
    notify.deliver(st, cfg, digest_day=day)  # the outcomes job again: no second digest
    digests = [p for p in webhook.posts if p["json"]["title"].startswith("ASX digest")]
    assert len(digests) == 1
    text = digests[0]["json"]["message"]
    assert "3 prediction(s) today for 3 symbol(s); 2 BUY/SELL signal(s)" in text
    assert "- BUY CBA.AX 0.80 at 10.00" in text and "- SELL NAB.AX 0.80" in text
    assert "Outcomes scored today: 1, 1 right (100%)" in text
    assert "- NAB.AX SELL after 1: -1.00% right" in text
    assert ("Hit rates so far (live predictions):\n- 1 session: BUY/SELL 100% of 1 [21%-100%]"
            " (too few to judge)") in text
    assert "baselines: always hold 0% of 1 [0%-79%] (too few to judge)" in text


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
