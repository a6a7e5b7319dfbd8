"""Outcome scoring: was each stored prediction right, and how often are predictions right.

A prediction is based on one session (:func:`trading.signals.ledger.base_session`). Its outcome
after ``N`` sessions (:data:`HORIZONS`: 1 and 5) compares that session's close with the close
``N`` ASX sessions later (counted on the exchange calendar, so a bar missing from Yahoo's
series never stretches the horizon: the outcome waits for it), both from one ``get_bars``
series (adjusted history is rewritten after every dividend, so mixing a stored price with a
later series would be wrong). Only settled bars count: a session's bar is used once the delayed
feed has its final close (:func:`trading.market.summary.settles_at`), never today's live bar,
because an outcome is written once. The return of the configured index (``context.index``,
``^AXJO`` by default) over the same two dates is stored beside it when the index has both bars.

When was the action **right**?

- BUY: the forward return is positive.
- SELL: the forward return is negative.
- HOLD: the absolute forward return is inside the band :data:`HOLD_BAND` for that horizon
  (1 % after one session, 2.5 % after five: about one standard deviation of a big ASX stock),
  i.e. nothing worth trading happened.

:func:`evaluate` fills the outcomes (one row per prediction and horizon, and an ``outcome``
event for a live prediction); :func:`accuracy` turns them into the scorecard
(:mod:`trading.signals.scorecard`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from functools import lru_cache
from datetime import date, datetime, timedelta
from typing import Any

from trading.errors import InvalidParams, TradingError
from trading.runtime.store import Store
from trading.signals import events as _events

logger = logging.getLogger(__name__)

JSON = dict[str, Any]
HORIZONS = (1, 5)
HOLD_BAND = {1: 0.01, 5: 0.025}
# Scored outcomes a horizon needs before a probability of being right is stated: the
# calibration (trading.signals.calibration) fits none with fewer, and the scorecard's
# walk-forward climatology starts where the calibration would.
MIN_OUTCOMES = 200

# (symbol, period, source) -> a market-data get_bars answer; source None: the configured one
GetBars = Callable[[str, str, str | None], Mapping]


def is_right(action: str, forward_return: float, horizon: int) -> bool:
    """Whether ``action`` was right given the forward return (see the module docstring)."""
    if action == "BUY":
        return forward_return > 0
    if action == "SELL":
        return forward_return < 0
    return abs(forward_return) < HOLD_BAND.get(horizon, HOLD_BAND[max(HOLD_BAND)])


def by_prediction(store: Store, ids: list[int]) -> dict[int, dict[str, JSON]]:
    """The stored outcomes of predictions ``ids``: ``{id: {"1": outcome, "5": outcome}}``."""
    if not ids:
        return {}
    out: dict[int, dict[str, JSON]] = {}
    for chunk in range(0, len(ids), 500):
        part = ids[chunk:chunk + 500]
        rows = store.query(
            f"SELECT * FROM outcomes WHERE prediction_id IN ({','.join('?' * len(part))})",
            tuple(part))
        for r in rows:
            out.setdefault(r["prediction_id"], {})[str(r["horizon"])] = _outcome(r)
    return out


def _outcome(r) -> JSON:
    return {"horizon": r["horizon"], "base_session": r["base_session"],
            "end_session": r["end_session"], "forward_return": r["forward_return"],
            "index_return": r["index_return"], "correct": bool(r["correct"])}


# -- scoring -----------------------------------------------------------------------------------
def _period_for(oldest: str, today: date) -> str:
    """The get_bars period reaching back to the session ``oldest``, at least a year."""
    from trading.market.periods import covering

    days = (today - date.fromisoformat(oldest)).days + 14  # room for the 5 sessions after
    return covering(days, shortest="1y")


def session_closes(answer: Mapping, cutoff: str = "9999"
                   ) -> tuple[list[str], dict[str, float]]:
    """Session dates and closes of a ``get_bars`` answer, up to and including ``cutoff``."""
    dates, closes = [], {}
    for bar in answer.get("bars") or []:
        d, c = str(bar.get("date", ""))[:10], bar.get("close")
        if d and d <= cutoff and isinstance(c, (int, float)) and c > 0:
            if d not in closes:
                dates.append(d)
            closes[d] = float(c)
    dates.sort()
    return dates, closes


def last_settled_session(at: datetime) -> date:
    """The latest session whose final bar the delayed feed has at ``at``."""
    from trading.market import asx, summary as market

    day = at.astimezone(asx.TZ).date()
    if asx.is_session(day) and at >= market.settles_at(day):
        return day
    return asx.previous_session(day)


def _sessions_after(day: date, n: int) -> date:
    from trading.market import asx

    for _ in range(n):
        day = asx.next_session(day)
    return day


@lru_cache(maxsize=1 << 16)
def _session_after(session: str, n: int) -> str:
    """:func:`_sessions_after` on ISO dates, memoized: a replay scores hundreds of thousands
    of predictions on a few thousand sessions, and every symbol shares the calendar."""
    return _sessions_after(date.fromisoformat(session), n).isoformat()


def evaluate(store: Store, get_bars: GetBars, *, index: str,
             publisher: _events.Publisher | None = None, today: date | None = None,
             now: str | None = None, at: datetime | None = None,
             source: str | None = None) -> JSON:
    """Fill the outcomes every prediction is old enough for; one ``get_bars`` per symbol and
    source, and one for ``index`` (the configured ``context.index``) per source.

    Each prediction is scored on bars from the source it was made from (``sample`` bars
    say nothing about a Yahoo prediction); ``source`` limits the run to predictions from
    that one. Bars count up to the last session settled at ``at`` (default: now); ``today``
    instead counts every session before that date. Returns ``{evaluated, pending, symbols,
    errors: {SYMBOL: message}}``."""
    from trading.market import asx

    now = now or _events.now_iso()
    if today is not None:
        settled = asx.previous_session(today)
    else:
        settled = last_settled_session(at or asx.now())
    cutoff = settled.isoformat()
    rows = store.query(
        "SELECT p.id, p.symbol, p.session, p.action, p.origin, p.source, "
        "  (SELECT group_concat(horizon) FROM outcomes o WHERE o.prediction_id = p.id) AS done "
        "FROM predictions p WHERE p.session <= ? AND "
        f"  (SELECT count(*) FROM outcomes o WHERE o.prediction_id = p.id) < {len(HORIZONS)}"
        + (" AND p.source = ?" if source is not None else ""),
        (cutoff,) + ((source,) if source is not None else ()))
    by_symbol: dict[tuple[str | None, str], list] = {}
    for r in rows:
        by_symbol.setdefault((r["source"], r["symbol"]), []).append(r)
    result: JSON = {"evaluated": 0, "pending": 0,
                    "symbols": len({symbol for _, symbol in by_symbol}), "errors": {}}
    if not by_symbol:
        return result

    oldest = min(r["session"] for r in rows)
    period = _period_for(oldest, settled + timedelta(days=1))
    index_closes: dict[str | None, dict[str, float]] = {}

    new_rows: list[tuple] = []
    new_events: list[JSON] = []
    for (src, symbol), preds in by_symbol.items():
        if src not in index_closes:
            try:
                index_closes[src] = session_closes(get_bars(index, period, src), cutoff)[1]
            except TradingError as exc:
                logger.warning("index %s bars from %s unavailable (%s): index returns left "
                               "empty", index, src or "the configured source", exc)
                index_closes[src] = {}
        index_close = index_closes[src]
        try:
            dates, close = session_closes(get_bars(symbol, period, src), cutoff)
        except TradingError as exc:
            result["errors"][symbol] = str(exc)
            result["pending"] += len(preds)
            continue
        if not dates:
            result["errors"][symbol] = "no bars"
            result["pending"] += len(preds)
            continue
        result["pending"] += score(symbol, preds, dates, close, index_close, now, result,
                                   new_rows, new_events)
    written: list[JSON] = []
    if new_rows:
        with store.transaction() as db:
            db.executemany(OUTCOMES_INSERT, new_rows)
            for payload in new_events:
                written.append(_events.append(db, "outcome", payload, created_at=now))
    if publisher is not None:
        publisher.publish(written)
    result["evaluated"] = len(new_rows)
    return result


def score(symbol: str, preds, dates: list[str], close: Mapping[str, float],
          index_close: Mapping[str, float], now: str, result: JSON, new_rows: list,
          new_events: list) -> int:
    """Score one symbol's predictions (rows with ``id, session, action, origin, done``:
    the horizons already scored, comma separated) on its closes by session (``dates`` in
    order); appends the outcome rows and, for live predictions, their events. Returns how
    many predictions still wait for a horizon; problems go to ``result["errors"]``."""
    pending = 0
    last = dates[-1]
    for r in preds:
        done = {int(h) for h in (r["done"] or "").split(",") if h}
        b = r["session"]
        if b not in close:
            # The series lacks the very bar the prediction saw (Yahoo dropped a day):
            # scoring from a neighbour would misdate it, so it waits and says why.
            result["errors"].setdefault(symbol, f"no bar for {b} (prediction {r['id']})")
            pending += 1
            continue
        waiting = False
        for h in HORIZONS:
            if h in done:
                continue
            e = _session_after(b, h)
            if e not in close:
                if e < last:  # a hole inside the series, not its end: say so
                    result["errors"].setdefault(symbol, f"no bar for {e} (a gap in the "
                                                        "series); its outcomes wait")
                waiting = True
                continue
            ret = close[e] / close[b] - 1.0
            idx = (index_close[e] / index_close[b] - 1.0
                   if b in index_close and e in index_close else None)
            ok = is_right(r["action"], ret, h)
            new_rows.append((r["id"], h, b, e, close[b], close[e], ret, idx, int(ok), now))
            if r["origin"] == "live":
                new_events.append({"prediction_id": r["id"], "symbol": symbol,
                                   "action": r["action"], "horizon": h, "base_session": b,
                                   "end_session": e, "forward_return": round(ret, 6),
                                   "index_return": None if idx is None else round(idx, 6),
                                   "correct": ok})
        pending += waiting
    return pending


OUTCOMES_INSERT = ("INSERT OR IGNORE INTO outcomes (prediction_id, horizon, base_session,"
                   " end_session, base_close, end_close, forward_return, index_return, correct,"
                   " evaluated_at) VALUES (?,?,?,?,?,?,?,?,?,?)")


# Which predictor made a stored prediction (docs/predictors.md); the rules before it was stored.
PREDICTOR_SQL = ("coalesce(json_extract(p.prediction, '$.predictor.name'), "
                 "'trading.signals.rules:predict')")


def latest_per_session(where: str = "") -> str:
    """A CTE ``p``: the predictions matching ``where`` (SQL over ``p``, may be empty), each
    with ``nth``, 1 for the latest of its symbol's session (per origin, predictor and data
    source). The timer predicts every 30 minutes and the 13 runs of one session share one
    outcome, so whatever counts outcomes (the scorecard, the calibration's minimum) keeps
    ``nth = 1``: the run that saw the most of the session it is scored from."""
    return ("WITH p AS (SELECT p.*, row_number() OVER (PARTITION BY p.symbol, p.session,"
            f" p.origin, {PREDICTOR_SQL}, coalesce(p.data_source, '') ORDER BY p.created_at"
            f" DESC, p.id DESC) AS nth FROM predictions p{' WHERE ' + where if where else ''})")


def accuracy(store: Store, origin: str | None = None, include_sample: bool = False,
             predictor: str | None = None) -> JSON:
    """The scorecard of every scored prediction, per horizon
    (:func:`trading.signals.scorecard.horizon_card`): BUY/SELL and HOLD apart, each with its
    Wilson interval, beside the baselines over the same sessions, and the calibrated
    probability's Brier skill, ECE and reliability table; ``by_predictor`` has the same
    scorecard for each predictor apart (docs/predictors.md).

    ``origin`` ('live' or 'replay') restricts to one kind of prediction, ``predictor``
    (``module:Name``) to one predictor's; predictions made from synthetic ``sample`` data are
    left out unless ``include_sample``."""
    from trading.signals import scorecard

    if origin not in (None, "live", "replay"):
        raise InvalidParams("origin must be 'live', 'replay' or null")
    if not isinstance(include_sample, bool):
        raise InvalidParams("include_sample must be true or false")
    if predictor is not None and not isinstance(predictor, str):
        raise InvalidParams("predictor must be a module:Name string or null")
    where, params = [], []
    if origin:
        where.append("p.origin = ?")
        params.append(origin)
    if predictor:
        where.append(f"{PREDICTOR_SQL} = ?")
        params.append(predictor)
    sample = "coalesce(p.data_source, '') = 'sample'"
    left_out = 0
    if not include_sample:
        left_out = store.query(
            "SELECT count(*) AS n FROM predictions p WHERE " + " AND ".join([*where, sample]),
            tuple(params))[0]["n"]
        where.append("NOT " + sample)
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    counts = store.query(f"SELECT p.origin, count(*) AS n FROM predictions p{clause} "
                         "GROUP BY p.origin", tuple(params))
    # One prediction per symbol and session: counting each run would multiply n without
    # adding evidence and narrow every interval.
    rows = store.query(
        latest_per_session(" AND ".join(where)) + " SELECT p.symbol, p.session, p.action, p.confidence, p.probability_1, p.probability_5,"
        " json_extract(p.prediction, '$.strength') AS strength, o.horizon, o.end_session,"
        f" o.forward_return, o.index_return, o.correct, {PREDICTOR_SQL} AS predictor, p.nth"
        " FROM outcomes o JOIN p ON p.id = o.prediction_id", tuple(params))
    repeats = {h: sum(1 for r in rows if r["nth"] > 1 and r["horizon"] == h) for h in HORIZONS}
    rows = [r for r in rows if r["nth"] == 1]
    by_h: dict[int, list[JSON]] = {}
    by_predictor_h: dict[str, dict[int, list[JSON]]] = {}
    for r in rows:
        h = r["horizon"]
        row = {
            "symbol": r["symbol"], "session": r["session"], "end_session": r["end_session"],
            "action": r["action"], "correct": bool(r["correct"]),
            "forward_return": r["forward_return"],
            "probability": r[f"probability_{h}"] if h in HORIZONS else None,
            # predictions from before issue 16 stored only the raw strength, as confidence
            "strength": r["strength"] if r["strength"] is not None else r["confidence"]}
        by_h.setdefault(h, []).append(row)
        by_predictor_h.setdefault(r["predictor"], {}).setdefault(h, []).append(row)

    def cards(groups: dict[int, list[JSON]]) -> JSON:
        return {str(h): scorecard.horizon_card(groups[h], HOLD_BAND.get(h, HOLD_BAND[5]),
                                               min_outcomes=MIN_OUTCOMES)
                for h in sorted(groups)}

    horizons = cards(by_h)
    return {
        "predictions": {r["origin"]: r["n"] for r in counts},
        "outcomes": len(rows),
        # scored predictions folded into a later one of the same symbol and session
        "repeats_folded": {str(h): n for h, n in repeats.items()},
        "sample_left_out": left_out,
        "hold_band": {str(k): v for k, v in HOLD_BAND.items()},
        "min_n": scorecard.MIN_N,
        "horizons": horizons,
        "by_predictor": {name: cards(groups) for name, groups in sorted(by_predictor_h.items())},
    }
