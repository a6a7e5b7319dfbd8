"""The scorecard read from its indexes gives the very numbers it gave reading every row whole
(issue 26).

``outcomes.accuracy`` reads the ``predictions_scored`` and ``outcomes_scored`` indexes into
numpy arrays and folds the runs of a session by their order in the index. The reference here
is the scorecard as it was computed before: every scored row through SQL's window over
:func:`outcomes.latest_per_session` (with the predictor and strength taken out of the JSON),
a dict per row, and a pass of plain Python per figure. Both run on the real replay of the
seven sample histories, with what a replay alone never has added: live runs of one session
(the latest of them not scored yet), a second predictor, and synthetic-sample predictions.
"""

from __future__ import annotations

import bisect
import json
import os
from datetime import date

import pytest

from trading import config, handlers
from trading.signals import calibration, ledger, outcomes, replay, scorecard

OTHER = "tests.predictors:Other"


@pytest.fixture
def replay_of(store, cfg, asx_daily):
    """``replay_of(symbols, start=None)``: the real replay of those sample histories."""
    client = handlers.client(config.get(), in_process="always")
    source = f"csv:{asx_daily}"

    def get_bars(symbol, period, _source=None):
        return client.call("market-data", "get_bars", {"symbol": symbol, "interval": "1d",
                                                       "period": period, "source": source})

    def run(symbols, start=None):
        replay.replay(store, cfg, get_bars, symbols, source=source, start=start,
                      today=date(2026, 3, 1))
        return store

    return run


# The predictor and the strength, as the JSON has them.
DERIVED = ("coalesce(json_extract(prediction, '$.predictor.name'), '" + ledger.RULES + "')",
           "json_extract(prediction, '$.strength')")
COLUMNS = ("symbol, created_at, session, action, confidence, score, price, market_context,"
           " model_version, data_stale, source, origin, run_id, prediction, inputs,"
           " data_source, as_of, probability_1, probability_5")


def _copy(db, where: str, **changed: str) -> None:
    """Copy the predictions matching ``where`` (with their outcomes), a column changed to
    the SQL expression given for it; the copies' ids come after every existing one. The
    predictor and strength columns are the copy's JSON's, as ledger.insert writes them."""
    (top,) = db.execute("SELECT max(id) FROM predictions").fetchone()
    chosen = ", ".join(changed.get(c.strip(), c.strip()) for c in COLUMNS.split(","))
    db.execute(f"INSERT INTO predictions (id, {COLUMNS}) SELECT id + {top}, {chosen}"
               f" FROM predictions WHERE {where}")
    db.execute(f"UPDATE predictions SET predictor = {DERIVED[0]}, strength = {DERIVED[1]}"
               f" WHERE id > {top}")
    db.execute("INSERT INTO outcomes SELECT o.prediction_id + ?, o.horizon, o.base_session,"
               " o.end_session, o.base_close, o.end_close, o.forward_return, o.index_return,"
               " o.correct, o.evaluated_at FROM outcomes o JOIN predictions p"
               f" ON p.id = o.prediction_id WHERE p.id <= ? AND {where}", (top, top))


def _add_live_runs_and_others(db) -> None:
    # Live runs of CBA's and NAB's sessions: three scored runs each, the middle one a BUY; a
    # fourth, later, unscored run of every other one of them stands for its session.
    for hour, action in (("00:00", "action"), ("02:00", "'BUY'"), ("05:15", "action")):
        _copy(db, "origin = 'replay' AND symbol IN ('CBA.AX', 'NAB.AX')", origin="'live'",
              created_at=f"session || 'T{hour}:00.000000+00:00'", action=action)
    (top,) = db.execute("SELECT max(id) FROM predictions").fetchone()
    db.execute(f"INSERT INTO predictions (id, {COLUMNS}, predictor, strength)"
               f" SELECT id + {top},"
               + COLUMNS.replace("created_at", "session || 'T06:00:00.000000+00:00'")
               + ", predictor, strength FROM predictions WHERE origin = 'live'"
               " AND created_at LIKE '%T05:15%' AND id % 2 = 0")
    # A second predictor over the same sessions (its name in the JSON, so in its column),
    # with no calibrated probability; of ANZ only the first session, which is BHP's first
    # too: BHP's first row is BHP's own, not a later run of ANZ's session. And sample-data
    # predictions, left out by default.
    _copy(db, "origin = 'replay' AND (symbol IN ('BHP.AX', 'WBC.AX') OR symbol = 'ANZ.AX'"
              " AND session = (SELECT min(session) FROM predictions))",
          prediction=f"json_set(prediction, '$.predictor.name', '{OTHER}')",
          probability_1="NULL", probability_5="NULL")
    _copy(db, "origin = 'replay' AND symbol = 'COL.AX' AND id % 4 = 0",
          data_source="'sample'", source="'sample'")
    # An hourly stream (issue 29) of CBA's live runs: it folds and counts apart.
    (top,) = db.execute("SELECT max(id) FROM predictions").fetchone()
    _copy(db, "origin = 'live' AND symbol = 'CBA.AX'")
    db.execute(f"UPDATE predictions SET interval = '1h' WHERE id > {top}")


# -- the reference: the scorecard as it was computed before issue 26 ---------------------------
def _brier(p, y):
    return sum((a - b) ** 2 for a, b in zip(p, y)) / len(p) if len(p) else None


def _reliability(p, y, bins=scorecard.BINS):
    out = []
    for k in range(bins):
        lo, hi = k / bins, (k + 1) / bins
        idx = [i for i, v in enumerate(p) if (lo <= v < hi) or (k == bins - 1 and v == 1.0)]
        if idx:
            out.append({"bin": f"{lo:.1f}-{hi:.1f}",
                        "mean_stated": scorecard._r(sum(p[i] for i in idx) / len(idx)),
                        **scorecard.rate(sum(y[i] for i in idx), len(idx))})
    return out


def _forecast(p, y):
    n = len(p)
    if not n:
        return {"n": 0, "brier": None, "base_rate": None, "brier_climatology": None,
                "brier_skill": None, "ece": None, "reliability": []}
    b, base = _brier(p, y), sum(y) / n
    clim = _brier([base] * n, y)
    table = _reliability(p, y)
    ece = sum(t["n"] * abs(t["mean_stated"] - t["hit_rate"]) for t in table) / n
    r = scorecard._r
    return {"n": n, "brier": r(b), "base_rate": r(base), "brier_climatology": r(clim),
            "brier_skill": r(1 - b / clim) if clim else None, "ece": r(ece),
            "reliability": table}


def _walk_forward(rows, min_outcomes):
    settled = sorted((r["end_session"], int(r["correct"])) for r in rows)
    ends, cum = [e for e, _ in settled], [0]
    for _, c in settled:
        cum.append(cum[-1] + c)
    ref, own, y = [], [], []
    for r in rows:
        k = bisect.bisect_right(ends, r["session"])
        if r["probability"] is not None and k >= min_outcomes:
            ref.append(cum[k] / k)
            own.append(r["probability"])
            y.append(int(r["correct"]))
    b_ref, b_own = _brier(ref, y), _brier(own, y)
    return {"n": len(y), "brier": scorecard._r(b_own), "brier_climatology": scorecard._r(b_ref),
            "brier_skill": scorecard._r(1 - b_own / b_ref) if b_ref else None}


def _group(rows):
    out = scorecard.rate(sum(int(r["correct"]) for r in rows), len(rows))
    out["mean_return"] = scorecard._r(sum(r["forward_return"] for r in rows) / len(rows), 6) \
        if rows else None
    return out


def _card(rows, band):
    n, r6 = len(rows), (lambda x: scorecard._r(x, 6))
    calls = [r for r in rows if r["action"] in ("BUY", "SELL")]
    by_action = {"BUY/SELL": _group(calls), "BUY": _group([r for r in calls if r["action"] == "BUY"]),
                 "SELL": _group([r for r in calls if r["action"] == "SELL"]),
                 "HOLD": _group([r for r in rows if r["action"] == "HOLD"])}
    signed = [r["forward_return"] * (1 if r["action"] == "BUY" else -1) for r in calls]
    by_action["BUY/SELL"]["mean_return_acting"] = r6(sum(signed) / len(signed)) if signed else None
    ups = sum(r["forward_return"] > 0 for r in rows)
    downs = sum(r["forward_return"] < 0 for r in rows)
    quiet = sum(abs(r["forward_return"]) < band for r in rows)
    best = max(("HOLD", quiet), ("BUY", ups), ("SELL", downs), key=lambda t: t[1])
    baselines = {"always_hold": scorecard.rate(quiet, n), "always_buy": scorecard.rate(ups, n),
                 "always_sell": scorecard.rate(downs, n),
                 "majority": {"action": best[0], **scorecard.rate(best[1], n)},
                 "buy_and_hold_mean_return": r6(sum(r["forward_return"] for r in rows) / n)}
    scored = [r for r in rows if r["probability"] is not None]
    y = [int(r["correct"]) for r in scored]
    probability = {"calibrated": _forecast([r["probability"] for r in scored], y),
                   "raw_strength": _forecast([float(r["strength"]) for r in scored], y),
                   "uncalibrated": n - len(scored),
                   "walk_forward_climatology": _walk_forward(rows, outcomes.MIN_OUTCOMES)}
    if len(scored) < n:
        probability["raw_strength_all"] = _forecast([float(r["strength"]) for r in rows],
                                                    [int(r["correct"]) for r in rows])
    symbols = {}
    for s in sorted({r["symbol"] for r in rows}):
        mine = [r for r in rows if r["symbol"] == s]
        symbols[s] = {"BUY/SELL": _group([r for r in mine if r["action"] != "HOLD"]),
                      "HOLD": _group([r for r in mine if r["action"] == "HOLD"]),
                      "always_hold": scorecard.rate(
                          sum(abs(r["forward_return"]) < band for r in mine), len(mine))}
    return {"n": n, "hold_band": band, "by_action": by_action, "baselines": baselines,
            "edge": _edge(rows), "probability": probability, "by_symbol": symbols}


def _edge(rows):
    """The edge row by row: each call's return after 10 bps a side minus its session's mean
    return; the interval from the same bootstrap, given the sessions in order."""
    import numpy as np

    from trading.learning.evaluation import block_interval

    days = sorted({r["session"] for r in rows})
    drift = {d: sum(r["forward_return"] for r in rows if r["session"] == d)
             / sum(1 for r in rows if r["session"] == d) for d in days}
    calls = [r for r in rows if r["action"] in ("BUY", "SELL")]
    beyond = [(r["forward_return"] if r["action"] == "BUY" else -r["forward_return"])
              - 0.002 - drift[r["session"]] for r in calls]
    out = {"calls": len(calls), "sessions": len({r["session"] for r in calls}),
           "cost_per_side": 0.001, "mean_beyond_drift": None, "ci95": None, "shown": False}
    if calls:
        out["mean_beyond_drift"] = scorecard._r(sum(beyond) / len(beyond), 6)
        at = np.array([days.index(r["session"]) for r in calls])
        lo, hi = block_interval(at, np.array(beyond), len(days))
        out["ci95"] = [scorecard._r(lo, 6), scorecard._r(hi, 6)]
        out["shown"] = len(calls) >= scorecard.MIN_N and lo > 0
    return out


def reference(store, origin=None, include_sample=False, predictor=None, interval=None):
    where, params = [], []
    if interval:
        where.append("p.interval = ?")
        params.append(interval)
    if origin:
        where.append("p.origin = ?")
        params.append(origin)
    if predictor:
        where.append(f"{outcomes.PREDICTOR_SQL} = ?")
        params.append(predictor)
    sample = "coalesce(p.data_source, '') = 'sample'"
    left_out = 0
    if not include_sample:
        left_out = store.query("SELECT count(*) FROM predictions p WHERE "
                               + " AND ".join([*where, sample]), tuple(params))[0][0]
        where.append("NOT " + sample)
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    counts = store.query(f"SELECT p.origin, count(*) AS n FROM predictions p{clause} "
                         "GROUP BY p.origin", tuple(params))
    rows = store.query(
        outcomes.latest_per_session(" AND ".join(where)) + " SELECT p.symbol, p.session,"
        " p.action, p.confidence, p.probability_1, p.probability_5,"
        " json_extract(p.prediction, '$.strength') AS strength, o.horizon, o.end_session,"
        f" o.forward_return, o.correct, {outcomes.PREDICTOR_SQL} AS predictor, p.nth,"
        " p.interval"
        " FROM outcomes o JOIN p ON p.id = o.prediction_id", tuple(params))
    repeats = {h: sum(1 for r in rows if r["nth"] > 1 and r["horizon"] == h)
               for h in outcomes.HORIZONS}
    rows = [r for r in rows if r["nth"] == 1]
    by_h, by_predictor, by_interval = {}, {}, {}
    for r in rows:
        h = r["horizon"]
        row = {"symbol": r["symbol"], "session": r["session"], "end_session": r["end_session"],
               "action": r["action"], "correct": bool(r["correct"]),
               "forward_return": r["forward_return"], "probability": r[f"probability_{h}"],
               "strength": r["strength"] if r["strength"] is not None else r["confidence"]}
        by_h.setdefault(h, []).append(row)
        by_predictor.setdefault(r["predictor"], {}).setdefault(h, []).append(row)
        part = by_interval.setdefault(r["interval"], ({}, {}))
        part[0].setdefault(h, []).append(row)
        part[1].setdefault(r["predictor"], {}).setdefault(h, []).append(row)

    def cards(groups):
        return {str(h): _card(groups[h], outcomes.HOLD_BAND[h]) for h in sorted(groups)}

    return {"predictions": {r["origin"]: r["n"] for r in counts}, "outcomes": len(rows),
            "repeats_folded": {str(h): n for h, n in repeats.items()},
            "sample_left_out": left_out,
            "hold_band": {str(k): v for k, v in outcomes.HOLD_BAND.items()},
            "min_n": scorecard.MIN_N, "horizons": cards(by_h),
            "by_predictor": {name: cards(g) for name, g in sorted(by_predictor.items())},
            "headlines": scorecard.headlines(
                {"by_predictor": {name: cards(g) for name, g in by_predictor.items()}}),
            "by_interval": {name: {
                "predictions": {o: n for o, n in store.query(
                    f"SELECT p.origin, count(*) FROM predictions p{clause}"
                    f"{' AND' if clause else ' WHERE'} p.interval = ? GROUP BY p.origin",
                    (*params, name))},
                "horizons": cards(by_interval[name][0]),
                "by_predictor": {k: cards(g) for k, g in sorted(by_interval[name][1].items())},
                "headlines": scorecard.headlines({"by_predictor": {
                    k: cards(g) for k, g in by_interval[name][1].items()}})}
                for name in interval_names(store, clause, params)}}


def interval_names(store, clause, params):
    """The intervals stored under the filter, in the configured order."""
    have = {r[0] for r in store.query(f"SELECT DISTINCT p.interval FROM predictions p{clause}",
                                      tuple(params))}
    return [i for i in config.PREDICTOR_INTERVALS if i in have]


# -- the tests ----------------------------------------------------------------------------------
KWARGS = [{}, {"origin": "replay"}, {"origin": "live"}, {"include_sample": True},
          {"predictor": OTHER}, {"predictor": "trading.signals.rules:predict", "origin": "replay"},
          {"predictor": "no.such:Predictor"}, {"interval": "1h"},
          {"interval": "1d", "origin": "live"}]


def test_the_scorecard_is_the_one_every_row_gave(replay_of, cfg):
    """Equal as JSON text, so every figure to its last printed digit, for every filter."""
    store = replay_of(cfg["symbols"])
    with store.transaction() as db:
        _add_live_runs_and_others(db)
    rep = outcomes.accuracy(store)
    assert set(rep["predictions"]) == {"live", "replay"}
    assert rep["repeats_folded"]["1"] > 0 and rep["repeats_folded"]["5"] > 0
    assert rep["sample_left_out"] > 0
    assert set(rep["by_predictor"]) == {"trading.signals.rules:predict", OTHER}
    assert set(rep["by_interval"]) == {"1d", "1h"}
    assert rep["horizons"]["5"]["probability"]["uncalibrated"] > 0
    for kwargs in KWARGS:
        got, want = outcomes.accuracy(store, **kwargs), reference(store, **kwargs)
        assert json.dumps(got, sort_keys=True) == json.dumps(want, sort_keys=True), kwargs


def _child_that(does, ran):
    """A stand-in for ``outcomes._read_child`` (the forked child runs whatever the module has
    when it forks), which first writes a line to the file ``ran``: ``read`` as the real one
    does, ``fail`` as a read failing, ``die`` as a child killed before it answers."""
    real = outcomes._read_child

    def child(path, reads, dtype, send):
        with open(ran, "a") as f:
            f.write(f"{os.getpid()}\n")
        if does == "fail":
            send.send_bytes(b"failed: no such table")
        elif does == "die":
            os._exit(3)
        else:
            real(path, reads, dtype, send)
    return child


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
@pytest.mark.parametrize("does", ["read", "fail", "die"])
def test_two_processes_read_the_very_rows_one_does(replay_of, cfg, monkeypatch, caplog, does,
                                                   tmp_path):
    """Read in two halves (a forked child's and this process's), the scorecard is the one a
    single process reads, for every filter; and a child that fails or dies only costs its
    half being read here."""
    store = replay_of(cfg["symbols"][:3])
    with store.transaction() as db:
        _add_live_runs_and_others(db)
    alone = {json.dumps(kwargs): json.dumps(outcomes.accuracy(store, **kwargs), sort_keys=True)
             for kwargs in KWARGS}
    monkeypatch.setattr(outcomes, "TWO_PROCESSES", 0)
    ran = tmp_path / "children"
    monkeypatch.setattr(outcomes, "_read_child", _child_that(does, ran))
    fell_back = 0  # the reports whose child's half was read here after all
    for kwargs in KWARGS:
        with caplog.at_level("WARNING", logger=outcomes.__name__):
            caplog.clear()
            got = json.dumps(outcomes.accuracy(store, **kwargs), sort_keys=True)
            fell_back += any("reading the rest in this process" in r.getMessage()
                             for r in caplog.records)
        assert got == alone[json.dumps(kwargs)], kwargs
    # a filter matching one range reads it here, no child; most match more
    children = ran.read_text().split()
    assert len(children) >= len(KWARGS) // 2 and str(os.getpid()) not in children
    assert fell_back == (0 if does == "read" else len(children))


def test_the_derived_columns_follow_the_json_its_writers_write(replay_of):
    """The predictor and strength columns (migration 0012) are the JSON's, as ledger.insert
    writes them and as the calibration's rewrite of a replay leaves them."""
    store = replay_of(["CBA.AX", "COL.AX"], start="2025-06-01")
    check = (f"SELECT count(*) FROM predictions WHERE predictor IS NOT {DERIVED[0]}"
             f" OR strength IS NOT {DERIVED[1]}")
    assert store.query("SELECT count(*) FROM predictions WHERE strength > 0")[0][0] > 0
    # the replay's walk-forward rewrote them: most carry a calibrated probability
    assert store.query("SELECT count(*) FROM predictions WHERE probability_1 IS NOT NULL"
                       )[0][0] > 0
    assert store.query(check)[0][0] == 0
    with store.transaction() as db:  # a stored call without its strength, as before issue 16
        db.execute("UPDATE predictions SET strength = NULL, prediction ="
                   " json_remove(prediction, '$.strength')")
    run = store.query("SELECT run_id FROM predictions LIMIT 1")[0][0]
    calibration.walk_forward(store, run)
    assert store.query(check)[0][0] == 0
    assert store.query("SELECT count(*) FROM predictions WHERE strength IS NULL")[0][0] == 0


def _rows(sessions, symbols, ret, action):
    import numpy as np

    n = len(ret)
    return {"symbol": np.array(symbols), "session": np.array(sessions),
            "end_session": np.array(sessions) + 1, "action": np.array(action, dtype="S4"),
            "correct": np.zeros(n, dtype=bool), "forward_return": np.array(ret, dtype=float),
            "probability": np.full(n, np.nan), "strength": np.full(n, 0.5)}


@pytest.mark.parametrize("lead, shown", [(0.01, True), (0.0015, False), (0.0, False)])
def test_an_edge_is_shown_only_when_the_calls_beat_the_drift_after_costs(lead, shown):
    """Two stocks a session for 300 sessions; the BUY is on the one that then rises ``lead``
    more than the other, with market noise shared by both. A 15 bps lead over the other stock
    (7.5 bps over the session's mean) is less than the 20 bps a round trip costs: no edge,
    however many calls."""
    import numpy as np

    rng = np.random.default_rng(1)
    sessions, symbols, ret, action = [], [], [], []
    for d in range(300):
        market = rng.normal(0, 0.01)
        noise = rng.normal(0, 0.002, 2)
        for s in (0, 1):
            sessions.append(d)
            symbols.append(s)
            ret.append(market + noise[s] + (lead if s == 0 else 0.0))
            action.append("BUY" if s == 0 else "HOLD")
    card = scorecard.horizon_card(_rows(sessions, symbols, ret, action), 0.01,
                                  min_outcomes=10, symbols=["A.AX", "B.AX"])
    e = card["edge"]
    assert e["calls"] == 300 and e["sessions"] == 300
    assert e["mean_beyond_drift"] == pytest.approx(lead / 2 - 0.002, abs=3e-4)
    assert e["shown"] is shown
    assert e["ci95"][0] < e["mean_beyond_drift"] < e["ci95"][1]
    line = scorecard.headlines({"by_predictor": {"mine:P": {"1": card}}})[0]
    assert line.startswith(f"mine:P: {'edge shown' if shown else 'no edge shown'}: 300 BUY/SELL")


def test_a_predictor_without_calls_shows_no_edge_and_the_rules_say_why():
    card = scorecard.horizon_card(_rows([0, 1], [0, 0], [0.01, -0.01], ["HOLD", "HOLD"]), 0.01,
                                  min_outcomes=10, symbols=["A.AX"])
    assert card["edge"] == {"calls": 0, "sessions": 0, "cost_per_side": 0.001,
                            "mean_beyond_drift": None, "ci95": None, "shown": False}
    [rules_line, other] = scorecard.headlines({"by_predictor": {
        "trading.signals.rules:predict": {"1": card}, "x:Y": {"1": card}}})
    assert rules_line.startswith("trading.signals.rules:predict: no edge shown: no BUY/SELL")
    assert "directional_calls" in rules_line and "directional_calls" not in other
