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
event for a live prediction); :func:`accuracy` aggregates them into the report.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta
from typing import Any

from trading.errors import InvalidParams, TradingError
from trading.runtime.store import Store
from trading.signals import events as _events

logger = logging.getLogger(__name__)

JSON = dict[str, Any]
HORIZONS = (1, 5)
HOLD_BAND = {1: 0.01, 5: 0.025}
CONFIDENCE_BANDS = ((0.0, 0.5), (0.5, 0.6), (0.6, 0.7), (0.7, 0.8), (0.8, 1.0001))

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


def _closes(answer: Mapping, cutoff: str = "9999") -> tuple[list[str], dict[str, float]]:
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
        settled = last_settled_session(at or datetime.now(asx.TZ))
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
                index_closes[src] = _closes(get_bars(index, period, src), cutoff)[1]
            except TradingError as exc:
                logger.warning("index %s bars from %s unavailable (%s): index returns left "
                               "empty", index, src or "the configured source", exc)
                index_closes[src] = {}
        index_close = index_closes[src]
        try:
            dates, close = _closes(get_bars(symbol, period, src), cutoff)
        except TradingError as exc:
            result["errors"][symbol] = str(exc)
            result["pending"] += len(preds)
            continue
        if not dates:
            result["errors"][symbol] = "no bars"
            result["pending"] += len(preds)
            continue
        for r in preds:
            done = {int(h) for h in (r["done"] or "").split(",") if h}
            b = r["session"]
            if b not in close:
                # The series lacks the very bar the prediction saw (Yahoo dropped a day):
                # scoring from a neighbour would misdate it, so it waits and says why.
                result["errors"].setdefault(symbol, f"no bar for {b} (prediction {r['id']})")
                result["pending"] += 1
                continue
            waiting = False
            for h in HORIZONS:
                if h in done:
                    continue
                e = _sessions_after(date.fromisoformat(b), h).isoformat()
                if e not in close:
                    if e < dates[-1]:  # a hole inside the series, not its end: say so
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
            result["pending"] += waiting
    written: list[JSON] = []
    if new_rows:
        with store.transaction() as db:
            db.executemany(
                "INSERT OR IGNORE INTO outcomes (prediction_id, horizon, base_session,"
                " end_session, base_close, end_close, forward_return, index_return, correct,"
                " evaluated_at) VALUES (?,?,?,?,?,?,?,?,?,?)", new_rows)
            for payload in new_events:
                written.append(_events.append(db, "outcome", payload, created_at=now))
    if publisher is not None:
        publisher.publish(written)
    result["evaluated"] = len(new_rows)
    return result


def _band(confidence: float) -> str:
    for lo, hi in CONFIDENCE_BANDS:
        if lo <= confidence < hi:
            return f"{lo:.1f}-{min(hi, 1.0):.1f}"
    return "1.0-1.0"


# Which predictor made a stored prediction (docs/predictors.md); the rules before it was stored.
PREDICTOR_SQL = ("coalesce(json_extract(p.prediction, '$.predictor.name'), "
                 "'trading.signals.rules:predict')")


def accuracy(store: Store, origin: str | None = None, predictor: str | None = None) -> JSON:
    """Hit rates by action, confidence band and symbol, and mean forward return per action,
    for each horizon, and each predictor's apart (``by_predictor``: overall and by action).
    ``origin`` ('live' or 'replay') restricts to one kind of prediction, ``predictor``
    (``module:Name``) to one predictor's."""
    if origin not in (None, "live", "replay"):
        raise InvalidParams("origin must be 'live', 'replay' or null")
    if predictor is not None and not isinstance(predictor, str):
        raise InvalidParams("predictor must be a module:Name string or null")
    conditions, params = [], ()
    if origin:
        conditions.append("p.origin = ?")
        params += (origin,)
    if predictor:
        conditions.append(f"{PREDICTOR_SQL} = ?")
        params += (predictor,)
    where = " WHERE " + " AND ".join(conditions) if conditions else ""
    counts = store.query(f"SELECT p.origin, count(*) AS n FROM predictions p{where} "
                         "GROUP BY p.origin", params)
    rows = store.query(
        "SELECT p.id, p.symbol, p.action, p.confidence, o.horizon, o.forward_return, o.index_return,"
        f" o.correct, {PREDICTOR_SQL} AS predictor"
        f" FROM outcomes o JOIN predictions p ON p.id = o.prediction_id{where}",
        params)
    horizons: dict[str, JSON] = {}
    groups: dict[int, dict[str, dict[str, list]]] = {}
    for r in rows:
        g = groups.setdefault(r["horizon"], {"action": {}, "band": {}, "symbol": {}, "all": {},
                                             "predictor": {}})
        for kind, key in (("action", r["action"]), ("band", _band(r["confidence"])),
                          ("symbol", r["symbol"]), ("all", "all"),
                          ("predictor", r["predictor"])):
            g[kind].setdefault(key, []).append(r)
    for h in sorted(groups):
        g = groups[h]
        horizons[str(h)] = {
            "overall": _stats(g["all"].get("all", [])),
            "by_action": {k: _stats(v) for k, v in sorted(g["action"].items())},
            "by_confidence": {k: _stats(v) for k, v in sorted(g["band"].items())},
            "by_symbol": {k: _stats(v) for k, v in sorted(g["symbol"].items())},
            "by_predictor": {k: {"overall": _stats(v), "by_action": {
                a: _stats([r for r in v if r["action"] == a])
                for a in sorted({r["action"] for r in v})}}
                for k, v in sorted(g["predictor"].items())},
        }
    return {
        "predictions": {r["origin"]: r["n"] for r in counts},
        "outcomes": len(rows),
        "hold_band": {str(k): v for k, v in HOLD_BAND.items()},
        "horizons": horizons,
    }


def _stats(rows: list) -> JSON:
    n = len(rows)
    if not n:
        return {"n": 0, "hits": 0, "hit_rate": None, "mean_return": None,
                "mean_index_return": None, "mean_excess_return": None}
    hits = sum(r["correct"] for r in rows)
    idx = [r for r in rows if r["index_return"] is not None]
    return {
        "n": n,
        "hits": hits,
        "hit_rate": round(hits / n, 4),
        "mean_return": round(sum(r["forward_return"] for r in rows) / n, 6),
        "mean_index_return": (round(sum(r["index_return"] for r in idx) / len(idx), 6)
                              if idx else None),
        "mean_excess_return": (round(sum(r["forward_return"] - r["index_return"] for r in idx)
                                     / len(idx), 6) if idx else None),
    }
