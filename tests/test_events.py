"""Events: the table is the record; a real ``redis-server`` on loopback receives copies.

The Redis tests start their own ``redis-server`` (no persistence, a free loopback port, a temp
directory) and subscribe with the real client before predicting; the Redis-down tests point
the URL at a port nothing listens on and check that predictions and events are unaffected.
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
import subprocess
import time
from datetime import date

import pytest

from trading import config
from trading.signals import events, ledger, outcomes
from trading import handlers
from trading.runtime.service import Context
from trading.errors import InvalidParams
from trading.runtime.store import Store

from conftest import wait_for

REDIS_SERVER = shutil.which("redis-server")
needs_redis = pytest.mark.skipif(REDIS_SERVER is None,
                                 reason="redis-server not installed (install.sh installs it)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def redis_server(tmp_path):
    """``(port, start(*extra_args))``: a private redis-server, stopped after the test."""
    procs = []

    def start(*extra: str) -> int:
        port = free_port()
        proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(tmp_path), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        procs.append(proc)

        def up():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return True
            except OSError:
                assert proc.poll() is None, proc.stdout.read().decode()
                return False

        wait_for(up, what="redis-server to listen")
        return port

    yield start
    for p in procs:
        p.terminate()
        p.wait(10)


def use_redis(monkeypatch, url: str):
    monkeypatch.setenv("TRADING_REDIS_URL", url)
    config.reset()
    cfg = config.get()
    return cfg


def service(cfg):
    from trading.handlers.prediction import Prediction

    return Prediction(Context(cfg, peers=handlers.client(cfg, in_process="always")))


def collect(pubsub, count: int, timeout: float = 5.0) -> list[dict]:
    got, deadline = [], time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        m = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
        if m is not None:
            got.append({"channel": m["channel"].decode(), **json.loads(m["data"])})
    return got


@needs_redis
def test_predictions_are_published_on_their_channel(monkeypatch, redis_server):
    import redis

    port = redis_server()
    cfg = use_redis(monkeypatch, f"redis://127.0.0.1:{port}/0")
    sub = redis.Redis(port=port).pubsub()
    sub.subscribe("trading:prediction", "trading:outcome")
    collect(sub, 0, 0.3)  # let the subscription settle

    svc = service(cfg)
    out = svc.generate_predictions(source="sample")
    assert len(out["results"]) == 7
    msgs = collect(sub, 7)
    table = svc.events(type="prediction")
    assert [m["id"] for m in msgs] == [e["id"] for e in table]
    assert {m["channel"] for m in msgs} == {"trading:prediction"}
    assert [m["payload"]["symbol"] for m in msgs] == list(out["results"])
    assert msgs[0]["payload"] == out["results"][msgs[0]["payload"]["symbol"]]
    assert svc.health_check()["events_published"] == 7
    svc.close()
    sub.close()


@needs_redis
def test_outcomes_are_published_too(monkeypatch, redis_server, asx_daily):
    import redis

    port = redis_server()
    cfg = use_redis(monkeypatch, f"redis://127.0.0.1:{port}/0")
    sub = redis.Redis(port=port).pubsub()
    sub.subscribe("trading:outcome")
    collect(sub, 0, 0.3)
    store = Store(cfg.db_path)
    from trading.signals import rules

    m = {"symbol": "BHP.AX", "as_of": "2025-11-03", "stale": False,
         "technical": {"tech_score": 0.3, "current_price": 40.0}, "volume": {},
         "market_context": {"context": "NEUTRAL"}}
    p = rules.decide(m, None, None, cfg, created_at="2025-11-03T06:00:00+00:00")
    ledger.record(store, [p], {"BHP.AX": {"market": m}}, source=None, run_id="t")

    client = handlers.client(cfg, in_process="always")

    def get_bars(symbol, period, _source=None):  # the bars are the fixture's own
        return client.call("market-data", "get_bars", {"symbol": symbol, "period": period,
                                                       "source": f"csv:{asx_daily}"})

    publisher = events.Publisher.from_config(cfg)
    outcomes.evaluate(store, get_bars, index=cfg["context.index"], publisher=publisher,
                      today=date(2026, 3, 1))
    msgs = collect(sub, 2)
    assert [(m["type"], m["payload"]["horizon"]) for m in msgs] == [("outcome", 1), ("outcome", 5)]
    assert msgs[0]["payload"]["prediction_id"] == p["id"]
    assert msgs[1]["payload"]["index_return"] is not None  # November 2025 has index bars
    publisher.close()
    client.close()
    store.close()


def test_redis_down_never_fails_a_prediction(monkeypatch, caplog):
    port = free_port()  # nothing listens there
    cfg = use_redis(monkeypatch, f"redis://:hunter2@127.0.0.1:{port}/0")
    svc = service(cfg)
    caplog.set_level(logging.WARNING, logger="trading.signals.events")
    t0 = time.monotonic()
    first = svc.generate_predictions(source="sample")
    second = svc.generate_predictions(["CBA.AX"], source="sample")
    elapsed = time.monotonic() - t0
    assert len(first["results"]) == 7 and len(second["results"]) == 1
    stored = svc.events(type="prediction")
    assert len(stored) == 8
    assert [e["payload"]["id"] for e in stored] == \
        [p["id"] for p in [*first["results"].values(), *second["results"].values()]]
    health = svc.health_check()
    # One failure, then publishing pauses instead of paying a timeout per call.
    assert health["publish_failures"] == 1 and health["events_published"] == 0
    warnings = [r.getMessage() for r in caplog.records if r.name == "trading.signals.events"]
    assert len(warnings) == 1 and "stay in the events table" in warnings[0]
    assert "hunter2" not in warnings[0] and ":***@" in warnings[0]
    assert elapsed < 10
    svc.close()


@needs_redis
def test_a_wrong_password_is_not_logged(monkeypatch, redis_server, caplog):
    port = redis_server("--requirepass", "right-one")
    cfg = use_redis(monkeypatch, f"redis://:wrong-one@127.0.0.1:{port}/0")
    caplog.set_level(logging.WARNING, logger="trading.signals.events")
    svc = service(cfg)
    out = svc.generate_predictions(["NAB"], source="sample")
    assert list(out["results"]) == ["NAB.AX"]
    assert len(svc.events()) == 1
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "failed" in text and "wrong-one" not in text
    svc.close()


def test_without_a_url_nothing_is_published(monkeypatch):
    cfg = use_redis(monkeypatch, "")
    svc = service(cfg)
    svc.generate_predictions(["BHP"], source="sample")
    h = svc.health_check()
    assert h["redis"] is False and h["events_published"] == 0 and h["publish_failures"] == 0
    assert len(svc.events()) == 1
    svc.close()


def test_events_read_in_order_by_type_and_latest(tmp_path):
    store = Store(tmp_path / "t.db")
    with store.transaction() as db:
        for i in range(5):
            events.append(db, "prediction" if i % 2 == 0 else "outcome", {"i": i})
    assert [e["payload"]["i"] for e in events.read(store)] == [0, 1, 2, 3, 4]
    assert [e["payload"]["i"] for e in events.read(store, after_id=2)] == [2, 3, 4]
    assert [e["payload"]["i"] for e in events.read(store, type="outcome")] == [1, 3]
    assert [e["payload"]["i"] for e in events.read(store, limit=2, latest=True)] == [3, 4]
    for bad in ("bogus", "", 3):  # a typo must not read as "no events yet"
        with pytest.raises(InvalidParams, match="prediction, outcome"):
            events.read(store, type=bad)
    store.close()


@pytest.mark.parametrize("url, shown", [
    ("redis://:pw@host:6379/0", "redis://:***@host:6379/0"),
    ("redis://user:pw@host/1", "redis://user:***@host/1"),
    ("redis://host:6379", "redis://host:6379"),
    ("rediss://u:p%40ss@h:1/0?ssl=1", "rediss://u:***@h:1/0?ssl=1"),
    ("redis://[::1]:6379/0", "redis://[::1]:6379/0"),
    ("unix:///run/redis.sock?password=pw&db=0", "unix:///run/redis.sock?password=***&db=0"),
    # Issue 27: no "@host" (the password written where the host goes): all of it is userinfo.
    ("redis://:S3cretPW", "redis://:***"),
    ("redis://user:S3cretPW", "redis://user:***"),
    ("rediss://user:S3cretPW/0?ssl=1", "rediss://user:***"),
    ("redis://:123456", "redis://:***"),           # no host, so no port either
    ("redis://user:123456", "redis://user:***"),   # past 65535: no port
])
def test_redact(url, shown):
    assert events.redact(url) == shown


def _generated_passwords(n: int = 200) -> list[str]:
    """Passwords as generators make them: letters, digits and the URL's own delimiters raw
    (every one of / # ? @ : at least once), from a fixed seed."""
    import random
    import string

    rng = random.Random(14)
    alphabet = string.ascii_letters + string.digits + "/#?@:!$%&*+-"
    out = []
    for _ in range(n):
        chars = [rng.choice(alphabet) for _ in range(rng.randint(12, 40))] + list("/#?@:")
        rng.shuffle(chars)
        out.append("".join(chars))
    return out


def _leaks(text: str, password: str) -> list[str]:
    """Runs of the password (between its delimiters, longer than two characters) in text."""
    import re

    runs = [r for r in re.split(r"[/#?@:&=]", password) if len(r) > 2]
    return [r for r in runs if r in text] + ([password] if password in text else [])


@pytest.mark.parametrize("template", [
    "redis://:{pw}@cache.internal:6379/0",
    "redis://default:{pw}@10.0.0.5:6380/2",
    "rediss://app:{pw}@[::1]:6379/0?ssl_cert_reqs=none",
    "redis://cache.internal:6379/0?password={pw}",
])
def test_redact_hides_generated_passwords_with_raw_delimiters(template):
    for pw in _generated_passwords():
        url = template.format(pw=pw)
        shown = events.redact(url)
        assert not _leaks(shown, pw), (url, shown)
        assert "***" in shown
    # the host stays readable where the password ends the userinfo
    assert events.redact("redis://:a/b#c?d@e:f@cache:6379/0") == "redis://:***@cache:6379/0"


# Without "@host" (issue 27). A raw "@" is left out of these passwords: "redis://:ab@cd/ef"
# names the host cd to redis-py too, so nothing could tell its "cd" from a host.
NO_HOST = ["redis://:{pw}", "redis://default:{pw}", "rediss://app:{pw}/0?ssl_cert_reqs=none"]


@pytest.mark.parametrize("template", NO_HOST)
def test_redact_hides_a_password_written_without_its_host(template):
    for pw in _generated_passwords():
        pw = pw.replace("@", "")
        url = template.format(pw=pw)
        shown = events.redact(url)
        assert not _leaks(shown, pw), (url, shown)
        assert "***" in shown


@pytest.mark.parametrize("template", NO_HOST)
def test_config_show_and_a_failed_publish_never_show_a_password_without_its_host(
        monkeypatch, caplog, template):
    from typer.testing import CliRunner

    from trading.cli.main import app

    caplog.set_level(logging.WARNING, logger="trading.signals.events")
    for pw in [p.replace("@", "") for p in _generated_passwords(10)] + ["S3cretPW"]:
        url = template.format(pw=pw)
        use_redis(monkeypatch, url)
        for args in (["config", "show"], ["config", "show", "--json"]):
            result = CliRunner().invoke(app, args)
            assert result.exit_code == 0, result.output
            assert not _leaks(result.output, pw), result.output
        caplog.clear()
        publisher = events.Publisher(url)  # redis-py refuses it: the password is "a port"
        assert publisher.publish([{"id": 1, "type": "prediction", "created_at": "x",
                                   "payload": {}}]) == 0
        publisher.close()
        text = " ".join(r.getMessage() for r in caplog.records)
        assert "failed" in text and not _leaks(text, pw), text


def test_config_show_never_prints_a_generated_password(monkeypatch):
    from typer.testing import CliRunner

    from trading.cli.main import app

    for pw in _generated_passwords(20):
        use_redis(monkeypatch, f"redis://:{pw}@127.0.0.1:6379/0")
        for args in (["config", "show"], ["config", "show", "--json"]):
            result = CliRunner().invoke(app, args)
            assert result.exit_code == 0, result.output
            assert not _leaks(result.output, pw), result.output


def test_a_failed_publish_never_logs_a_generated_password(caplog):
    port = free_port()  # nothing listens there
    caplog.set_level(logging.WARNING, logger="trading.signals.events")
    for pw in _generated_passwords(30):
        caplog.clear()
        publisher = events.Publisher(f"redis://:{pw}@127.0.0.1:{port}/0")
        assert publisher.publish([{"id": 1, "type": "prediction", "created_at": "x",
                                   "payload": {}}]) == 0
        publisher.close()
        text = " ".join(r.getMessage() for r in caplog.records)
        assert "failed" in text and not _leaks(text, pw), text
