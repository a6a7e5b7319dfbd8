"""The prediction log and outcome scoring, on the real bars in tests/data/asx-daily.

The replay test does what `trading replay DIR` + `trading report` do: it predicts each
historical session with the real rules from bars read through market-data's ``csv:DIR``
source, stores the predictions with historical dates, scores their outcomes, and then checks
the scores against returns computed here, independently, from the CSV files.
"""

from __future__ import annotations

import csv
import json
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from trading import config
from trading.signals import ledger, outcomes, replay, rules
from trading import handlers
from trading.runtime.service import Context
from trading.errors import InvalidParams, NotFound
from trading.runtime.store import Store


def read_closes(path) -> dict[str, float]:
    """Session date -> close, read straight from a CSV in either of the two layouts."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header = next(i for i, r in enumerate(rows) if r and r[0] in ("Date", "Price"))
    names = rows[header]
    if names[0] == "Price":  # yf.download layout: Price/Ticker/Date rows, then data
        start = next(i for i, r in enumerate(rows) if r and r[0] == "Date") + 1
    else:
        start = header + 1
    col = names.index("Close")
    return {r[0][:10]: float(r[col]) for r in rows[start:] if r and r[col]}


@pytest.fixture
def bars_from(asx_daily):
    client = handlers.client(config.get(), in_process="always")
    source = f"csv:{asx_daily}"

    def get_bars(symbol, period, _source=None):  # the bars are the fixture's own
        return client.call("market-data", "get_bars", {"symbol": symbol, "interval": "1d",
                                                       "period": period, "source": source})

    return source, get_bars


def market(symbol="CBA.AX", as_of="2025-10-01", tech=0.9, price=100.0):
    return {"symbol": symbol, "as_of": as_of, "source": "csv", "stale": False, "age_s": 5,
            "technical": {"current_price": price, "rsi": 35.0, "macd_histogram": 0.1,
                          "price_vs_sma20": 1.2, "tech_score": tech, "market_price": price},
            "volume": {"volume_trend": 0.2, "price_volume_correlation": 0.3,
                       "volume_quality_score": 0.7},
            "market_context": {"context": "NEUTRAL", "trend_pct": 0.1,
                               "confidence_multiplier": 1.0, "buy_threshold": 0.7,
                               "fallback": False}}


def store_one(store, cfg, m, sentiment=None, created_at="2025-10-01T06:00:00+00:00",
              emit=True):
    p = rules.decide(m, sentiment, None, cfg, created_at=created_at)
    written = ledger.record(store, [p], {m["symbol"]: {"market": m, "sentiment": sentiment}},
                            source="csv", run_id="t", emit=emit)
    return p, written


# -- the log ----------------------------------------------------------------------------------
def test_a_prediction_is_stored_with_its_inputs(store, cfg):
    m = market()
    s = {"symbol": "CBA.AX", "score": 0.4, "confidence": 0.9, "headline_count": 4, "stale": False}
    p, written = store_one(store, cfg, m, s)
    assert p["id"] > 0 and p["session"] == "2025-10-01"
    [row] = ledger.history(store, inputs=True)
    assert row["inputs"] == {"market": m, "sentiment": s}
    assert row["action"] == p["action"] and row["confidence"] == p["confidence"]
    assert ledger.latest(store, "CBA.AX")["id"] == p["id"]
    assert [e["type"] for e in written] == ["prediction"]
    assert written[0]["payload"]["id"] == p["id"]
    assert store.schema_version() >= 4
    assert store.query("PRAGMA journal_mode")[0][0] == "wal"


def test_one_prediction_is_one_insert_in_one_transaction_with_its_event(store, cfg):
    """record() writes each row once (no INSERT-then-UPDATE to add the id to its JSON), and
    the rows and their events commit together."""
    m = [market(s) for s in ("CBA.AX", "NAB.AX", "BHP.AX")]
    made = [rules.decide(x, None, None, cfg, created_at="2025-10-01T06:00:00+00:00") for x in m]
    for p, x in zip(made, m):
        p["symbol"] = x["symbol"]
    store.query("SELECT 1")  # open the connection before tracing it
    statements: list[str] = []
    store.conn.set_trace_callback(statements.append)
    try:
        ledger.record(store, made, {x["symbol"]: {"market": x} for x in m}, source="csv",
                      run_id="t")
    finally:
        store.conn.set_trace_callback(None)
    kinds = [" ".join(s.split()[:3]).lower() for s in statements]
    assert kinds.count("insert into predictions") == 3
    assert not [s for s in statements if "UPDATE" in s.upper()]
    assert kinds.count("insert into events") == 3
    assert kinds[0] == "begin immediate" and kinds[-1] == "commit"
    assert kinds.count("begin immediate") == 1
    # What was written once reads back whole, with the row's id.
    for p in made:
        [row] = [r for r in ledger.history(store) if r["id"] == p["id"]]
        assert {k: v for k, v in row.items() if k not in ("outcomes", "stream")} == \
            json.loads(json.dumps(p))
        assert row["stream"] == {"origin": "live", "source": "csv",
                                 "predictor": ledger.RULES, "interval": "1d"}


def test_history_filters_and_orders(store, cfg):
    for day, sym in (("2025-10-01", "CBA.AX"), ("2025-10-02", "NAB.AX"), ("2025-10-03", "CBA.AX")):
        store_one(store, cfg, market(sym, day), created_at=f"{day}T06:00:00+00:00")
    assert [p["session"] for p in ledger.history(store)] == \
        ["2025-10-03", "2025-10-02", "2025-10-01"]
    assert [p["session"] for p in ledger.history(store, "CBA.AX")] == \
        ["2025-10-03", "2025-10-01"]
    assert len(ledger.history(store, since="2025-10-02")) == 2
    assert len(ledger.history(store, since="2025-10-02T17:00:00+11:00")) == 2
    assert len(ledger.history(store, limit=1)) == 1
    # Without an offset, Sydney time (as TRADING_NOW): 15:00 UTC on 1 Oct is 01:00 on 2 Oct
    # in Sydney, so "since 2025-10-02" includes it (read as UTC it would not).
    store_one(store, cfg, market("ANZ.AX", "2025-10-01"), created_at="2025-10-01T15:00:00+00:00")
    assert "ANZ.AX" in {p["symbol"] for p in ledger.history(store, since="2025-10-02")}
    assert "ANZ.AX" not in {p["symbol"] for p in ledger.history(store, since="2025-10-02T01:30")}
    # The CLI shows the time in Sydney too, so a time copied from its table filters alike.
    shown = CliRunner().invoke(_cli_app(), ["--in-process", "history", "ANZ"])
    assert "made (Sydney)" in shown.output and "2025-10-02 01:00" in shown.output, shown.output
    with pytest.raises(InvalidParams):
        ledger.history(store, since="yesterday")
    with pytest.raises(InvalidParams):
        ledger.history(store, limit=0)
    with pytest.raises(NotFound):
        ledger.latest(store, "WBC.AX")


def test_latest_each_is_one_row_per_symbol_with_its_data_age(store, cfg):
    for day, sym in (("2025-10-01", "CBA.AX"), ("2025-10-02", "NAB.AX"), ("2025-10-03", "CBA.AX")):
        store_one(store, cfg, market(sym, day), created_at=f"{day}T06:00:00+00:00")
    rows = ledger.latest_each(store)
    assert [(p["symbol"], p["session"]) for p in rows] == \
        [("CBA.AX", "2025-10-03"), ("NAB.AX", "2025-10-02")]
    assert rows[0]["as_of"] == "2025-10-03" and rows[0]["age_s"] == 5
    assert rows[0]["source"] == "csv" and rows[0]["origin"] == "live"
    assert rows[0]["outcomes"] == {}


def test_the_base_session_is_the_last_bar_seen_else_the_sydney_date():
    assert ledger.base_session({"as_of": "2025-10-01"}, "2025-10-05T00:00:00+00:00") == \
        "2025-10-01"
    # 23:30 UTC on the 1st is 10:30 on the 2nd in Sydney (AEST, +10:00 until 5 October).
    assert ledger.base_session({}, "2025-10-01T23:30:00+00:00") == "2025-10-02"
    assert ledger.base_session(None, "2025-10-01T12:00:00+00:00") == "2025-10-01"


@pytest.mark.parametrize("action, ret, horizon, right", [
    ("BUY", 0.001, 1, True), ("BUY", 0.0, 1, False), ("BUY", -0.02, 5, False),
    ("SELL", -0.001, 1, True), ("SELL", 0.0, 1, False), ("SELL", 0.03, 5, False),
    ("HOLD", 0.0099, 1, True), ("HOLD", -0.0101, 1, False), ("HOLD", 0.02, 5, True),
    ("HOLD", -0.026, 5, False),
])
def test_what_right_means(action, ret, horizon, right):
    assert outcomes.is_right(action, ret, horizon) is right


# -- outcomes on the real bars --------------------------------------------------------------
def test_outcomes_match_the_csv(store, cfg, asx_daily, bars_from):
    source, get_bars = bars_from
    cba = read_closes(asx_daily / "CBA.AX.csv")
    axjo = read_closes(asx_daily / "^AXJO.csv")
    dates = sorted(cba)
    # A session inside the index's range, one 5 sessions before the end, and the last one.
    base = "2025-10-15"
    i = dates.index(base)
    p, _ = store_one(store, cfg, market("CBA.AX", base), created_at=f"{base}T06:00:00+00:00")
    near_end = dates[-3]
    q, _ = store_one(store, cfg, market("CBA.AX", near_end),
                     created_at=f"{near_end}T06:00:00+00:00")
    last = dates[-1]
    store_one(store, cfg, market("CBA.AX", last), created_at=f"{last}T06:00:00+00:00")

    result = outcomes.evaluate(store, get_bars, index=cfg["context.index"],
                               today=date(2026, 3, 1))
    assert result["errors"] == {}
    # p: both horizons; q: only 1 session (5 would pass the data's end); last: nothing yet.
    assert result["evaluated"] == 3
    assert result["pending"] == 2
    got = ledger.history(store, "CBA.AX", limit=10)
    by_id = {r["id"]: r["outcomes"] for r in got}
    for h in (1, 5):
        o = by_id[p["id"]][str(h)]
        expected = cba[dates[i + h]] / cba[base] - 1
        assert o["end_session"] == dates[i + h]
        assert o["forward_return"] == pytest.approx(expected, abs=1e-7)
        assert o["index_return"] == pytest.approx(axjo[dates[i + h]] / axjo[base] - 1, abs=1e-7)
        assert o["correct"] is outcomes.is_right(p["action"], expected, h)
    assert set(by_id[q["id"]]) == {"1"}

    # Evaluating again adds nothing and leaves the waiting ones waiting.
    again = outcomes.evaluate(store, get_bars, index=cfg["context.index"],
                              today=date(2026, 3, 1))
    assert again["evaluated"] == 0 and again["pending"] == 2


def _series(closes: dict[str, float]):
    """A get_bars answering ``closes`` for every symbol (the index too)."""
    def get_bars(symbol, period, _source=None):  # the bars are the fixture's own
        return {"bars": [{"date": d, "close": c} for d, c in sorted(closes.items())]}
    return get_bars


def test_a_live_bar_is_never_scored_only_the_settled_close(store, cfg):
    """At 11:00 on 31 Dec the series has that day's live bar; the outcome waits for the
    settled close instead of being written once from a price that will still move."""
    sydney = ZoneInfo("Australia/Sydney")
    p, _ = store_one(store, cfg, market("CBA.AX", "2025-12-30"),
                     created_at="2025-12-30T05:00:00+00:00")
    live = _series({"2025-12-29": 160.0, "2025-12-30": 161.29, "2025-12-31": 164.52})
    morning = datetime(2025, 12, 31, 11, 0, tzinfo=sydney)
    result = outcomes.evaluate(store, live, index=cfg["context.index"], at=morning)
    assert result["evaluated"] == 0 and result["pending"] == 1
    # 31 Dec closes early (14:10); its bar settles 14:32 at the latest. Evening: scored.
    final = _series({"2025-12-29": 160.0, "2025-12-30": 161.29, "2025-12-31": 160.57})
    result = outcomes.evaluate(store, final, index=cfg["context.index"],
                               at=datetime(2025, 12, 31, 17, 0, tzinfo=sydney))
    assert result["evaluated"] == 1
    [o] = store.query("SELECT * FROM outcomes WHERE prediction_id = ?", (p["id"],))
    assert (o["end_session"], o["end_close"]) == ("2025-12-31", 160.57)
    assert o["forward_return"] == pytest.approx(160.57 / 161.29 - 1)


def test_the_runs_of_one_session_count_once_in_the_scorecard(store, cfg):
    """The timer predicts every 30 minutes: CBA's three runs on 30 Dec share one outcome, so
    they are one observation (the latest, which saw most of the session), not three."""
    closes = _series({"2025-12-29": 160.0, "2025-12-30": 161.29, "2025-12-31": 164.52})
    for created_at, tech in (("2025-12-29T23:00:00+00:00", 0.95),   # 10:00 Sydney: BUY
                             ("2025-12-30T02:00:00+00:00", 0.95),   # 13:00: BUY
                             ("2025-12-30T05:15:00+00:00", 0.5)):   # 16:15: HOLD
        store_one(store, cfg, market("CBA.AX", "2025-12-30", tech=tech), created_at=created_at)
    store_one(store, cfg, market("NAB.AX", "2025-12-30", tech=0.5),
              created_at="2025-12-30T05:15:00+00:00")
    actions = [r["action"] for r in store.query("SELECT action FROM predictions "
                                                "WHERE symbol = 'CBA.AX' ORDER BY id")]
    assert actions == ["BUY", "BUY", "HOLD"]
    sydney = ZoneInfo("Australia/Sydney")
    result = outcomes.evaluate(store, closes, index=cfg["context.index"],
                               at=datetime(2025, 12, 31, 17, 0, tzinfo=sydney))
    assert result["evaluated"] == 4  # every run is scored and kept in its history
    card = outcomes.accuracy(store, "live")
    assert card["repeats_folded"]["1"] == 2
    h1 = card["horizons"]["1"]
    assert h1["n"] == 2
    assert h1["by_action"]["BUY"]["n"] == 0 and h1["by_action"]["HOLD"]["n"] == 2
    out = CliRunner().invoke(_cli_app(), ["--in-process", "report"])
    assert "2 earlier run(s) of a symbol's session folded" in out.output, out.output


def test_the_calibration_counts_a_symbols_session_once_too(store, cfg):
    """The fit's minimum history counts outcomes: a session's 13 timer runs are one."""
    from trading.signals import calibration

    closes = _series({"2025-12-29": 160.0, "2025-12-30": 161.29, "2025-12-31": 164.52})
    for created_at in ("2025-12-29T23:00:00+00:00", "2025-12-30T02:00:00+00:00",
                       "2025-12-30T05:35:00+00:00"):
        store_one(store, cfg, market("CBA.AX", "2025-12-30"), created_at=created_at)
    sydney = ZoneInfo("Australia/Sydney")
    outcomes.evaluate(store, closes, index=cfg["context.index"],
                      at=datetime(2025, 12, 31, 17, 0, tzinfo=sydney))
    assert store.query("SELECT count(*) FROM outcomes")[0][0] == 3
    assert calibration.fit_store(store).fitted_on["1"] == 1


def _cli_app():
    from trading.cli.main import app

    return app


def test_the_horizon_counts_sessions_not_the_bars_yahoo_sent(store, cfg):
    """Yahoo leaves out 31 Dec: one session after 30 Dec is still 31 Dec, not 2 Jan."""
    store_one(store, cfg, market("CBA.AX", "2025-12-30"), created_at="2025-12-30T05:00:00+00:00")
    store_one(store, cfg, market("CBA.AX", "2025-12-22"), created_at="2025-12-22T05:00:00+00:00")
    holey = _series({"2025-12-22": 150.0, "2025-12-23": 151.0, "2025-12-24": 152.0,
                     "2025-12-29": 153.0, "2025-12-30": 154.0, "2026-01-02": 155.0,
                     "2026-01-05": 156.0, "2026-01-06": 157.0})
    result = outcomes.evaluate(store, holey, index=cfg["context.index"], today=date(2026, 1, 7))
    rows = store.query("SELECT p.session, o.horizon, o.end_session FROM outcomes o "
                       "JOIN predictions p ON p.id = o.prediction_id ORDER BY 1, 2")
    # 22 Dec: 1 session -> 23 Dec; 5 sessions -> 23, 24, 29, 30, 31 Dec: missing, so it waits.
    assert [tuple(r) for r in rows] == [("2025-12-22", 1, "2025-12-23")]
    assert "2025-12-31" in result["errors"]["CBA.AX"] and result["pending"] == 2


def test_a_prediction_whose_own_bar_is_missing_waits(store, cfg):
    store_one(store, cfg, market("CBA.AX", "2025-12-30"), created_at="2025-12-30T05:00:00+00:00")
    result = outcomes.evaluate(store, _series({"2025-12-29": 1.0, "2025-12-31": 2.0,
                                               "2026-01-02": 3.0}),
                               index=cfg["context.index"], today=date(2026, 1, 7))
    assert result["evaluated"] == 0 and result["pending"] == 1
    assert "2025-12-30" in result["errors"]["CBA.AX"]


def test_each_prediction_is_scored_on_bars_from_its_own_source(store, cfg):
    """`trading report --evaluate --source sample` once scored real predictions on the
    synthetic bars; the source a prediction's market data came from is stored with it."""
    for src in ("yahoo", "sample"):
        m = market("CBA.AX", "2025-12-22")
        m["source"] = src
        store_one(store, cfg, m, created_at="2025-12-22T05:00:00+00:00")
    asked = []
    closes = {"yahoo": {"2025-12-22": 100.0, "2025-12-23": 101.0},
              "sample": {"2025-12-22": 10.0, "2025-12-23": 9.0}}

    def get_bars(symbol, period, source=None):
        asked.append((symbol, source))
        return {"bars": [{"date": d, "close": c} for d, c in sorted(closes[source].items())]}

    only = outcomes.evaluate(store, get_bars, index=cfg["context.index"],
                             today=date(2026, 1, 7), source="sample")
    assert only["evaluated"] == 1 and {src for _, src in asked} == {"sample"}
    outcomes.evaluate(store, get_bars, index=cfg["context.index"], today=date(2026, 1, 7))
    rows = store.query("SELECT p.source, o.end_close FROM outcomes o JOIN predictions p "
                       "ON p.id = o.prediction_id WHERE o.horizon = 1 ORDER BY 1")
    assert [tuple(r) for r in rows] == [("sample", 9.0), ("yahoo", 101.0)]
    assert ("^AXJO", "yahoo") in asked and ("^AXJO", "sample") in asked


def test_outcome_events_are_appended(store, cfg, bars_from):
    from trading.signals import events

    _, get_bars = bars_from
    p, _ = store_one(store, cfg, market("NAB.AX", "2025-06-02"),
                     created_at="2025-06-02T06:00:00+00:00")
    outcomes.evaluate(store, get_bars, index=cfg["context.index"], today=date(2026, 3, 1))
    outcome_events = events.read(store, type="outcome")
    assert [(e["payload"]["prediction_id"], e["payload"]["horizon"]) for e in outcome_events] \
        == [(p["id"], 1), (p["id"], 5)]
    # Before 2025-09-08 the shared index file has no bars: the index return stays empty.
    assert outcome_events[0]["payload"]["index_return"] is None


def test_replay_over_the_shared_data_and_report(store, cfg, asx_daily, bars_from):
    source, get_bars = bars_from
    symbols = ["CBA.AX", "BHP.AX"]
    result = replay.replay(store, cfg, get_bars, symbols, source=source,
                           start="2025-06-01", today=date(2026, 3, 1))
    closes = {s: read_closes(asx_daily / f"{s}.csv") for s in symbols}
    sessions = {s: [d for d in sorted(c) if d >= "2025-06-01"] for s, c in closes.items()}
    assert result["predictions"] == sum(len(v) for v in sessions.values())
    # Every prediction old enough got both horizons; the last 1 and 5 sessions wait.
    n1 = sum(len(v) - 1 for v in sessions.values())
    n5 = sum(len(v) - 5 for v in sessions.values())
    assert result["outcomes"]["evaluated"] == n1 + n5

    # Each stored outcome agrees with the CSV and with the rule for "right".
    rows = store.query("SELECT p.symbol, p.action, p.session, p.created_at, o.* FROM outcomes o "
                       "JOIN predictions p ON p.id = o.prediction_id")
    assert len(rows) == n1 + n5
    for r in rows:
        c = closes[r["symbol"]]
        d = sorted(c)
        assert r["base_session"] == r["session"]
        assert r["end_session"] == d[d.index(r["session"]) + r["horizon"]]
        ret = c[r["end_session"]] / c[r["base_session"]] - 1
        assert r["forward_return"] == pytest.approx(ret, abs=1e-7)
        assert bool(r["correct"]) is outcomes.is_right(r["action"], ret, r["horizon"])
        # Stored as made at that session's close, in Sydney.
        assert ledger.sydney_date(r["created_at"]) == r["session"]

    # The report aggregates exactly those rows: BUY/SELL and HOLD apart, never pooled.
    report = outcomes.accuracy(store, "replay")
    assert report["predictions"] == {"replay": result["predictions"]}
    for h, n in (("1", n1), ("5", n5)):
        card = report["horizons"][h]
        assert card["n"] == n
        acts = card["by_action"]
        assert acts["BUY/SELL"]["n"] + acts["HOLD"]["n"] == n
        assert acts["BUY"]["n"] + acts["SELL"]["n"] == acts["BUY/SELL"]["n"]
        assert set(card["by_symbol"]) == set(symbols)
        mine = [r for r in rows if r["horizon"] == int(h)]
        for action in ("BUY", "SELL", "HOLD"):
            got = [r for r in mine if r["action"] == action]
            assert acts[action]["hits"] == sum(r["correct"] for r in got)
            if got:
                assert acts[action]["mean_return"] == pytest.approx(
                    sum(r["forward_return"] for r in got) / len(got), abs=1e-6)
        # The baselines are over the same rows, computed here from the returns.
        band = outcomes.HOLD_BAND[int(h)]
        b = card["baselines"]
        assert b["always_hold"]["hits"] == sum(abs(r["forward_return"]) < band for r in mine)
        assert b["always_buy"]["hits"] == sum(r["forward_return"] > 0 for r in mine)
        assert b["majority"]["hits"] == max(b[k]["hits"] for k in
                                            ("always_hold", "always_buy", "always_sell"))
        # Every calibrated probability is in 0..1 and every row is calibrated or counted out.
        pr = card["probability"]
        assert pr["calibrated"]["n"] + pr["uncalibrated"] == n

    # A second replay of the same source replaces the first rather than doubling it.
    again = replay.replay(store, cfg, get_bars, symbols, source=source,
                          start="2025-06-01", today=date(2026, 3, 1))
    assert again["predictions"] == result["predictions"]
    assert store.query("SELECT count(*) FROM predictions")[0][0] == result["predictions"]
    # Replays are history, not news: no events.
    assert store.query("SELECT count(*) FROM events")[0][0] == 0


def test_cli_replay_of_an_old_download_uses_the_whole_record_and_says_what_it_left_out():
    """A trader's folder from the 1990s: the replay used only the last ten years (and said
    "replayed 0 predictions (none)" for 1995-1996), read unadjusted prices (a 2:1 split as a
    -50 % day), and computed daily indicators across one-row-a-month years."""
    from pathlib import Path

    from trading.cli.main import app

    folder = Path(__file__).parent / "data" / "asx-history"
    runner = CliRunner()
    done = runner.invoke(app, ["replay", str(folder), "--symbol", "ABC", "--symbol", "RMD", "--json"])
    assert done.exit_code == 0, done.output
    body = json.loads(done.stdout)
    cov = body["coverage"]
    assert cov["first"] == "1988-01-29" and cov["symbols"] == 2
    assert cov["predicted"] == body["predictions"] > 0
    # ABC's monthly rows until 1998 are each a gap: nothing is predicted from them, and the
    # sessions left out are counted with their reason.
    assert body["reading"]["ABC.AX"]["gaps"] > 100
    assert cov["sessions"] == cov["predicted"] + sum(cov["left_out"].values())
    assert cov["left_out"]["warm-up after a start or a gap"] > 100
    sessions = [r["session"] for r in Store(config.get().db_path).query(
        "SELECT session FROM predictions WHERE symbol = 'ABC.AX' ORDER BY session")]
    assert sessions[0] > "1998-12-31"
    # RMD's split of 2000-03-08 is not a move: the bars are adjusted by Adj Close.
    assert body["reading"]["RMD.AX"]["adjusted"] == "Adj Close"
    moves = [r["forward_return"] for r in Store(config.get().db_path).query(
        "SELECT o.forward_return FROM outcomes o JOIN predictions p ON p.id = o.prediction_id "
        "WHERE p.symbol = 'RMD.AX' AND o.horizon = 1")]
    assert moves and max(abs(m) for m in moves) < 0.25

    # A window with no prediction in it says why, in the plain output.
    early = runner.invoke(app, ["replay", str(folder), "--symbol", "ABC", "--start", "1995-01-01",
                                "--end", "1996-12-31"])
    assert early.exit_code == 0, early.output
    assert "replayed 0 predictions" in early.stdout
    assert "warm-up after a start or a gap" in early.stdout and "after --end" in early.stdout
    assert "gaps (indicators restart after each)" in early.stdout


def test_cli_replay_then_report(asx_daily):
    from trading.cli.main import app

    runner = CliRunner()
    replayed = runner.invoke(app, ["replay", str(asx_daily), "--symbol", "CBA", "--symbol", "WBC",
                                   "--start", "2025-09-01", "--json"])
    assert replayed.exit_code == 0, replayed.output
    body = json.loads(replayed.stdout)
    assert body["predictions"] > 60 and body["outcomes"]["evaluated"] > 100
    shown = runner.invoke(app, ["report", "--by-symbol"])
    assert shown.exit_code == 0, shown.output
    assert "After 1 session(s)" in shown.stdout and "After 5 session(s)" in shown.stdout
    assert "CBA.AX" in shown.stdout and "WBC.AX" in shown.stdout
    as_json = json.loads(runner.invoke(app, ["report", "--json"]).stdout)
    assert as_json["horizons"]["1"]["n"] == body["predictions"] - 2


def test_accuracy_rejects_an_unknown_origin(store):
    with pytest.raises(InvalidParams):
        outcomes.accuracy(store, "future")


# -- the service in-process ------------------------------------------------------------------
def test_generate_predictions_in_process_with_the_sample_source(cfg):
    from trading.handlers.prediction import Prediction

    svc = Prediction(Context(cfg, peers=handlers.client(cfg, in_process="always")))
    out = svc.generate_predictions(["cba", "NAB.AX", "bad symbol!", "CBA.AX"], source="sample")
    assert list(out["results"]) == ["CBA.AX", "NAB.AX"]
    assert out["errors"]["bad symbol!"]["problem"] == "invalid-symbol"
    for p in out["results"].values():
        assert p["action"] in ("BUY", "SELL", "HOLD") and 0 <= p["confidence"] <= 1
        assert set(p["components"]) == {"technical", "sentiment", "volume", "market", "model"}
        assert p["created_at"] == out["created_at"]
    stored = svc.history()
    assert {p["symbol"] for p in stored} == {"CBA.AX", "NAB.AX"}
    assert svc.get_prediction("cba")["id"] == out["results"]["CBA.AX"]["id"]
    assert [e["payload"]["symbol"] for e in svc.events(type="prediction")] == ["CBA.AX", "NAB.AX"]
    with pytest.raises(InvalidParams):
        svc.generate_predictions([], source="sample")
    with pytest.raises(InvalidParams):
        svc.events(after_id=-1)
    svc.close()


def test_trading_predict_on_a_fresh_machine():
    """No services installed: the handlers run in-process, say so in one line, and store."""
    from trading.cli.main import app

    result = CliRunner().invoke(app, ["predict", "--source", "sample"])
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stderr.splitlines() if "in-process" in line]
    assert len(notes) == 1
    for symbol in ("CBA.AX", "ANZ.AX", "NAB.AX", "WBC.AX", "MQG.AX", "COL.AX", "BHP.AX"):
        assert symbol in result.stdout
    store = Store(config.get().db_path)
    assert store.query("SELECT count(*) FROM predictions")[0][0] == 7
    store.close()
    as_json = CliRunner().invoke(app, ["predict", "CBA", "--source", "sample", "--json"])
    assert list(json.loads(as_json.stdout)["results"]) == ["CBA.AX"]


def test_trading_predict_fails_only_when_every_symbol_fails():
    from trading.cli.main import app

    some = CliRunner().invoke(app, ["predict", "CBA", "NOT!", "--source", "sample"])
    assert some.exit_code == 0
    assert "NOT!" in some.stderr
    none = CliRunner().invoke(app, ["predict", "NOT!", "ALSO?", "--source", "sample"])
    assert none.exit_code == 2  # all refused as input
    assert "ALSO?" in none.stderr


def test_trading_events_and_history():
    from trading.cli.main import app

    runner = CliRunner()
    runner.invoke(app, ["predict", "CBA", "NAB", "--source", "sample"])
    shown = runner.invoke(app, ["events", "--type", "prediction"])
    assert shown.exit_code == 0, shown.output
    assert "CBA.AX" in shown.stdout and "NAB.AX" in shown.stdout
    lines = runner.invoke(app, ["events", "--json", "-n", "1"]).stdout.splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["payload"]["symbol"] == "NAB.AX"
    typo = runner.invoke(app, ["events", "--type", "predictions"])
    assert typo.exit_code == 2 and "prediction, outcome" in typo.stderr
    hist = runner.invoke(app, ["history", "NAB", "--json"])
    assert [p["symbol"] for p in json.loads(hist.stdout)] == ["NAB.AX"]


def _readline(proc, timeout: float = 20.0) -> str:
    """One line of the child's stdout, or fail after ``timeout`` (never hang the suite)."""
    import select

    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, f"no output within {timeout}s"
    return proc.stdout.readline()


def test_trading_events_follow_prints_new_events():
    import os
    import subprocess
    import sys

    from trading.cli.main import app

    CliRunner().invoke(app, ["predict", "CBA", "--source", "sample"])
    proc = subprocess.Popen([sys.executable, "-m", "trading.cli.main", "events", "--follow",
                             "--interval", "0.1", "--json"], env=dict(os.environ),
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            bufsize=1)
    try:
        assert json.loads(_readline(proc))["payload"]["symbol"] == "CBA.AX"
        CliRunner().invoke(app, ["predict", "WBC", "--source", "sample"])
        assert json.loads(_readline(proc))["payload"]["symbol"] == "WBC.AX"
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_active_model_is_a_component_and_is_credited(cfg):
    """With a model trained and activated (issue 7's registry), its probability is the model
    component and its version is recorded; without one the weight is redistributed."""
    from trading.learning import models
    from trading.learning.features import FEATURE_NAMES
    from trading.handlers.prediction import Prediction

    svc = Prediction(Context(cfg, peers=handlers.client(cfg, in_process="always")))
    before = svc.generate_predictions(["CBA"], source="sample")["results"]["CBA.AX"]
    assert before["components"]["model"] is None and before["model_version"] is None

    k = len(FEATURE_NAMES)
    model = models.LinearModel(version="unsaved", features=list(FEATURE_NAMES), mean=[0.0] * k,
                               scale=[1.0] * k, coef=[0.01] * k, intercept=1.5)
    row = models.save(svc.store, cfg, model, symbols=["CBA.AX"], train_start="2024-01-02",
                      train_end="2025-12-31", source="sample", metrics={})
    models.activate(svc.store, row["version"], force=True)  # a hand-made model

    out = svc.generate_predictions(["CBA"], source="sample")
    p = out["results"]["CBA.AX"]
    assert out["model_version"] == p["model_version"] == row["version"]
    stored = svc.history("CBA", limit=1)[0]
    [inputs] = [r for r in ledger.history(svc.store, "CBA.AX", limit=1, inputs=True)]
    expected = model.probability(inputs["inputs"]["market"])
    assert inputs["inputs"]["model"] == {"version": row["version"], "probability": expected}
    assert p["components"]["model"] == pytest.approx(expected, abs=1e-4)
    assert "model" in p["weights"] and stored["id"] == p["id"]
    svc.close()


def test_the_configured_index_is_the_one_scored_and_replayed(monkeypatch, tmp_path, asx_daily):
    """``context.index`` names the index: outcome scoring (the service's evaluate_outcomes) and
    the replay ask for it, never a hard-coded ^AXJO. The folder holds no ^AXJO.csv, so an index
    return can only come from the configured one."""
    import shutil

    from trading.handlers.prediction import Prediction

    for name in ("CBA.AX.csv", "NAB.AX.csv"):
        shutil.copy(asx_daily / name, tmp_path / name)
    shutil.copy(asx_daily / "^AXJO.csv", tmp_path / "^AORD.csv")
    monkeypatch.setenv("TRADING_CONTEXT_INDEX", "^AORD")
    config.reset()
    cfg = config.get()
    client = handlers.client(cfg, in_process="always")
    source = f"csv:{tmp_path}"
    asked = []

    def get_bars(symbol, period, _source=None):
        asked.append(symbol)
        return client.call("market-data", "get_bars", {"symbol": symbol, "interval": "1d",
                                                       "period": period, "source": source})

    store = Store(cfg.db_path)
    result = replay.replay(store, cfg, get_bars, ["CBA.AX"], source=source,
                           start="2025-11-03", end="2025-11-07", today=date(2026, 3, 1))
    assert result["outcomes"]["evaluated"] == 10 and result["outcomes"]["errors"] == {}
    assert "^AORD" in asked and "^AXJO" not in asked
    rows = store.query("SELECT index_return, inputs FROM outcomes o "
                       "JOIN predictions p ON p.id = o.prediction_id")
    assert rows and all(r["index_return"] is not None for r in rows)
    assert all(json.loads(r["inputs"])["market"]["market_context"]["fallback"] is False
               for r in rows)

    m = market("NAB.AX", "2025-11-03")
    m["source"] = source
    store_one(store, cfg, m, created_at="2025-11-03T06:00:00+00:00")
    svc = Prediction(Context(cfg, peers=client))
    scored = svc.evaluate_outcomes(source=source)
    assert scored["evaluated"] == 2 and scored["errors"] == {}
    nab = store.query("SELECT o.index_return FROM outcomes o JOIN predictions p "
                      "ON p.id = o.prediction_id WHERE p.symbol = 'NAB.AX'")
    assert len(nab) == 2 and all(r["index_return"] is not None for r in nab)
    svc.close()
    store.close()
    client.close()


def _replayed(store):
    return {(r["symbol"], r["session"]) for r in store.query(
        "SELECT symbol, session FROM predictions WHERE origin = 'replay'")}


def test_replaying_one_symbol_keeps_every_other_symbols_replay(store, cfg, bars_from):
    """`replay D --symbol CBA; replay D --symbol BHP` used to leave only BHP: the second replay deleted
    every earlier replay of the same source."""
    source, get_bars = bars_from
    replay.replay(store, cfg, get_bars, ["CBA.AX"], source=source, start="2025-12-01",
                  today=date(2026, 3, 1))
    cba = _replayed(store)
    assert cba and {s for s, _ in cba} == {"CBA.AX"}
    replay.replay(store, cfg, get_bars, ["BHP.AX"], source=source, start="2025-12-01",
                  today=date(2026, 3, 1))
    both = _replayed(store)
    assert cba <= both and {s for s, _ in both} == {"CBA.AX", "BHP.AX"}
    # a narrower window of CBA replaces those sessions only, once each
    replay.replay(store, cfg, get_bars, ["CBA.AX"], source=source, start="2025-12-15",
                  today=date(2026, 3, 1))
    assert _replayed(store) == both
    n = store.query("SELECT COUNT(*) AS n FROM predictions WHERE origin = 'replay'")[0]["n"]
    assert n == len(both)


def test_an_interrupted_replay_leaves_the_earlier_one_whole(store, cfg, bars_from, monkeypatch):
    """Ctrl-C mid-replay used to leave 0 rows of the earlier 473: the delete and the inserts
    were separate transactions."""
    source, get_bars = bars_from
    replay.replay(store, cfg, get_bars, ["CBA.AX"], source=source, start="2025-11-01",
                  today=date(2026, 3, 1))
    before = _replayed(store)

    def interrupted(*args, **kwargs):  # inside the symbol's transaction: deleted, inserted
        raise KeyboardInterrupt

    monkeypatch.setattr(replay.outcomes, "score", interrupted)
    with pytest.raises(KeyboardInterrupt):
        replay.replay(store, cfg, get_bars, ["CBA.AX"], source=source, start="2025-11-01",
                      today=date(2026, 3, 1))
    assert _replayed(store) == before


# -- Ctrl-C during a real replay (issue 27: it exited only 6-10 s later) ---------------------------
HISTORY = __import__("pathlib").Path(__file__).parent / "data" / "asx-history"


def _replay_process(state, log_level: str = "INFO"):
    """``trading replay tests/data/asx-history --symbol ABC --symbol RMD`` in its own process group (a
    terminal's Ctrl-C goes to the whole group), its log on stderr read line by line."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, TRADING_STATE_DIR=str(state), TRADING_LOG_LEVEL=log_level)
    return subprocess.Popen([sys.executable, "-m", "trading.cli.main", "replay", str(HISTORY),
                             "--symbol", "ABC", "--symbol", "RMD"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _per_symbol(db) -> dict[str, tuple[int, int]]:
    s = Store(db)
    try:
        assert s.query("PRAGMA integrity_check")[0][0] == "ok"
        assert not s.query("PRAGMA foreign_key_check")
        return {r["symbol"]: (r["p"], r["o"]) for r in s.query(
            "SELECT p.symbol, count(DISTINCT p.id) AS p, count(o.prediction_id) AS o "
            "FROM predictions p LEFT JOIN outcomes o ON o.prediction_id = p.id "
            "GROUP BY p.symbol")}
    finally:
        s.close()


@pytest.fixture(scope="module")
def whole_replay(tmp_path_factory):
    """What the replay stores when it runs to its end: predictions and outcomes a symbol."""
    state = tmp_path_factory.mktemp("whole")
    proc = _replay_process(state, "ERROR")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return _per_symbol(state / "trading.db")


@pytest.mark.parametrize("marker, delay", [
    ("replaying RMD.AX", 0.0),      # predicting and storing the second symbol
    ("calibrating", 0.0),           # the walk-forward's inputs read and sorted
    ("calibrating", 0.2),           # the first fits
    ("calibrating", 0.4),
    ("calibrating", 0.8),           # the walk-forward's fits and rewrites
])
def test_ctrl_c_stops_a_real_replay_within_a_second(tmp_path, whole_replay, marker, delay):
    import os
    import queue
    import signal
    import threading
    import time

    proc = _replay_process(tmp_path / "state")
    lines: queue.Queue = queue.Queue()
    err: list[str] = []

    def read() -> None:
        for line in proc.stderr:
            err.append(line)
            lines.put(line)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while True:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            if marker in line:
                break
        time.sleep(delay)
        sent = time.monotonic()
        running = proc.poll() is None
        try:
            os.killpg(proc.pid, signal.SIGINT)
        except ProcessLookupError:  # ended already (its reader too): nothing to stop
            running = False
        proc.wait(30)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(10)
        proc.stdout.close()
        proc.stderr.close()
    text = "".join(err)
    assert "Traceback" not in text and "initialization failed" not in text, text
    if running:
        # -SIGINT: Python ends by the signal itself when Ctrl-C landed in a compiled module's
        # own Python (scipy's, while scikit-learn is imported); a shell says 130 for both.
        assert proc.returncode in (130, -signal.SIGINT), (proc.returncode, text)
        assert took < 1.0, f"{took:.2f} s from Ctrl-C to exit"
    # Each symbol stored whole or not at all, its outcomes with it.
    stored = _per_symbol(tmp_path / "state" / "trading.db")
    for symbol, counts in stored.items():
        assert counts == whole_replay[symbol], (symbol, counts, whole_replay[symbol])
