"""The prediction log, outcome scoring and the historical replay.

Every prediction is stored with the inputs that produced it (the market-data and sentiment
answers and the model probability), so any prediction can be explained and re-decided later.
Predictions and their events are written in one transaction; the events go to Redis after it
commits (:mod:`trading.signals.events`).

Outcomes
--------
A prediction is *based* on one session: the session date of the last bar it saw (market-data's
``as_of``; for a prediction without it, the Sydney date it was made). Its outcome after ``N``
sessions (:data:`HORIZONS`: 1 and 5) compares that session's close with the close ``N`` ASX
sessions later (counted on the exchange calendar, so a bar missing from Yahoo's series never
stretches the horizon: the outcome waits for it), both from one ``get_bars`` series (adjusted
history is rewritten after every dividend, so mixing a stored price with a later series would
be wrong). Only settled bars count: a session's bar is used once the delayed feed has its
final close (:func:`trading.market.summary.settles_at`), never today's live bar, because an outcome
is written once. The index (``^AXJO``) return over the same two dates is stored beside it
when the index has both bars.

When was the action **right**?

- BUY: the forward return is positive.
- SELL: the forward return is negative.
- HOLD: the absolute forward return is inside the band :data:`HOLD_BAND` for that horizon
  (1 % after one session, 2.5 % after five: about one standard deviation of a big ASX stock),
  i.e. nothing worth trading happened.

Replay
------
:func:`replay` rebuilds history: for each session in a ``csv:DIR`` series it summarises the
bars up to that session (:func:`trading.market.summary.summarize`, the same code market-data serves),
decides with :func:`trading.signals.rules.decide` (no sentiment: there are no historical headlines),
stores the prediction as made at that session's close (``origin = 'replay'``), and then runs
the outcome scoring over the same bars. Replayed predictions emit no events: they are history,
not news.
"""

from __future__ import annotations

import bisect
import json
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from trading.signals import events as _events
from trading.signals import rules
from trading.errors import InvalidParams, NotFound, TradingError
from trading.runtime.store import Store

logger = logging.getLogger(__name__)

JSON = dict[str, Any]
HORIZONS = (1, 5)
HOLD_BAND = {1: 0.01, 5: 0.025}
CONFIDENCE_BANDS = ((0.0, 0.5), (0.5, 0.6), (0.6, 0.7), (0.7, 0.8), (0.8, 1.0001))
INDEX = "^AXJO"
MAX_LIMIT = 1000
REPLAY_LOOKBACK = 260    # bars per summary: the year live market-data fetches
REPLAY_WARMUP = 35       # MACD(12, 26, 9) needs 34 bars before its first value
_SYDNEY = None


def _tz():
    global _SYDNEY
    if _SYDNEY is None:
        from zoneinfo import ZoneInfo

        _SYDNEY = ZoneInfo("Australia/Sydney")
    return _SYDNEY


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=str)


def sydney_date(created_at: str) -> str:
    """The Sydney calendar date (YYYY-MM-DD) of an ISO timestamp (naive means UTC)."""
    t = datetime.fromisoformat(created_at)
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return t.astimezone(_tz()).date().isoformat()


def base_session(market: Mapping | None, created_at: str) -> str:
    """The session a prediction is based on: the last bar it saw, else its Sydney date."""
    as_of = market.get("as_of") if isinstance(market, Mapping) else None
    if isinstance(as_of, str) and len(as_of) >= 10:
        try:
            return date.fromisoformat(as_of[:10]).isoformat()
        except ValueError:
            pass
    return sydney_date(created_at)


def is_right(action: str, forward_return: float, horizon: int) -> bool:
    """Whether ``action`` was right given the forward return (see the module docstring)."""
    if action == "BUY":
        return forward_return > 0
    if action == "SELL":
        return forward_return < 0
    return abs(forward_return) < HOLD_BAND.get(horizon, HOLD_BAND[max(HOLD_BAND)])


# -- the log -----------------------------------------------------------------------------------
def record(store: Store, predictions: Sequence[JSON], inputs: Mapping[str, JSON], *,
           source: str | None, run_id: str, origin: str = "live",
           emit: bool = True) -> list[JSON]:
    """Store predictions (with ``inputs[symbol]``) and, if ``emit``, one event each.

    Sets ``id`` on each prediction; returns the events written (publish them after this)."""
    written: list[JSON] = []
    with store.transaction() as db:
        for p in predictions:
            p["created_at"] = canonical_time(p["created_at"])
            inp = inputs.get(p["symbol"], {})
            session = base_session(inp.get("market"), p["created_at"])
            used = _market_source(inp.get("market")) or source
            cur = db.execute(
                "INSERT INTO predictions (symbol, created_at, session, action, confidence, score,"
                " price, market_context, model_version, data_stale, source, origin, run_id,"
                " prediction, inputs) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (p["symbol"], p["created_at"], session, p["action"], p["confidence"],
                 p.get("score"), p.get("price"), p.get("market_context"), p.get("model_version"),
                 int(bool(p.get("data_stale"))), used, origin, run_id, "", _dumps(inp)))
            p["id"] = cur.lastrowid
            p["session"] = session
            db.execute("UPDATE predictions SET prediction = ? WHERE id = ?", (_dumps(p), p["id"]))
            if emit:
                written.append(_events.append(db, "prediction", p, created_at=p["created_at"]))
    return written


def _market_source(market: Any) -> str | None:
    """The source market-data answered from (``yahoo``, ``sample``, ``csv:/dir``), which
    is where the outcome's bars must come from too."""
    src = market.get("source") if isinstance(market, Mapping) else None
    return src if isinstance(src, str) and src else None


def _prediction(row) -> JSON:
    p = json.loads(row["prediction"])
    p["id"] = row["id"]
    return p


def latest(store: Store, symbol: str) -> JSON:
    rows = store.query("SELECT id, prediction FROM predictions WHERE symbol = ? "
                       "ORDER BY created_at DESC, id DESC LIMIT 1", (symbol,))
    if not rows:
        raise NotFound(f"no prediction for {symbol} yet (run `trading predict {symbol}`)",
                       symbol=symbol)
    p = _prediction(rows[0])
    p["outcomes"] = _outcomes_for(store, [p["id"]]).get(p["id"], {})
    return p


def canonical_time(ts: str) -> str:
    """An ISO timestamp as UTC with microseconds, the one text form stored (so text order is
    time order); a naive timestamp is taken as UTC."""
    t = datetime.fromisoformat(ts)
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return t.astimezone(timezone.utc).isoformat(timespec="microseconds")


def _parse_since(since: Any) -> str | None:
    if since is None:
        return None
    if not isinstance(since, str):
        raise InvalidParams("since must be an ISO date or date-time string")
    try:
        t = datetime.fromisoformat(since)
    except ValueError as exc:
        raise InvalidParams(f"since={since!r} is not an ISO date or date-time") from exc
    return canonical_time(t.isoformat())


def history(store: Store, symbol: str | None = None, since: Any = None,
            limit: Any = 100, inputs: bool = False) -> list[JSON]:
    """Stored predictions, newest first, each with its ``outcomes`` by horizon."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidParams(f"limit must be an integer from 1 to {MAX_LIMIT}")
    where, params = [], []
    if symbol is not None:
        where.append("symbol = ?")
        params.append(symbol)
    cutoff = _parse_since(since)
    if cutoff is not None:
        where.append("created_at >= ?")
        params.append(cutoff)
    sql = ("SELECT id, prediction, inputs FROM predictions"
           + (" WHERE " + " AND ".join(where) if where else "")
           + " ORDER BY created_at DESC, id DESC LIMIT ?")
    rows = store.query(sql, (*params, limit))
    out = []
    for r in rows:
        p = _prediction(r)
        if inputs:
            p["inputs"] = json.loads(r["inputs"])
        out.append(p)
    outcomes = _outcomes_for(store, [p["id"] for p in out])
    for p in out:
        p["outcomes"] = outcomes.get(p["id"], {})
    return out


def _outcomes_for(store: Store, ids: list[int]) -> dict[int, dict[str, JSON]]:
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


# -- outcomes ----------------------------------------------------------------------------------
# (symbol, period, source) -> a market-data get_bars answer; source None: the configured one
GetBars = Callable[[str, str, str | None], Mapping]


def _period_for(oldest: str, today: date) -> str:
    days = (today - date.fromisoformat(oldest)).days + 14  # room for the 5 sessions after
    for period, span in (("1y", 360), ("2y", 725), ("5y", 1820)):
        if days <= span:
            return period
    return "10y"


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

    day = at.astimezone(_tz()).date()
    if asx.is_session(day) and at >= market.settles_at(day):
        return day
    return asx.previous_session(day)


def _sessions_after(day: date, n: int) -> date:
    from trading.market import asx

    for _ in range(n):
        day = asx.next_session(day)
    return day


def evaluate(store: Store, get_bars: GetBars, *, publisher: _events.Publisher | None = None,
             today: date | None = None, now: str | None = None,
             at: datetime | None = None, source: str | None = None) -> JSON:
    """Fill the outcomes every prediction is old enough for; one ``get_bars`` per symbol and
    source.

    Each prediction is scored on bars from the source it was made from (``sample`` bars
    say nothing about a Yahoo prediction); ``source`` limits the run to predictions from
    that one. Bars count up to the last session settled at ``at`` (default: now); ``today``
    instead counts every session before that date. Returns ``{evaluated, pending, symbols,
    errors: {SYMBOL: message}}``."""
    now = now or _events.now_iso()
    if today is not None:
        from trading.market import asx

        settled = asx.previous_session(today)
    else:
        settled = last_settled_session(at or datetime.now(_tz()))
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
                index_closes[src] = _closes(get_bars(INDEX, period, src), cutoff)[1]
            except TradingError as exc:
                logger.warning("index %s bars from %s unavailable (%s): index returns left "
                               "empty", INDEX, src or "the configured source", exc)
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


def accuracy(store: Store, origin: str | None = None) -> JSON:
    """Hit rates by action, confidence band and symbol, and mean forward return per action,
    for each horizon. ``origin`` ('live' or 'replay') restricts to one kind of prediction."""
    if origin not in (None, "live", "replay"):
        raise InvalidParams("origin must be 'live', 'replay' or null")
    where, params = "", ()
    if origin:
        where, params = " WHERE p.origin = ?", (origin,)
    counts = store.query(f"SELECT p.origin, count(*) AS n FROM predictions p{where} "
                         "GROUP BY p.origin", params)
    rows = store.query(
        "SELECT p.id, p.symbol, p.action, p.confidence, o.horizon, o.forward_return, o.index_return,"
        f" o.correct FROM outcomes o JOIN predictions p ON p.id = o.prediction_id{where}",
        params)
    horizons: dict[str, JSON] = {}
    groups: dict[int, dict[str, dict[str, list]]] = {}
    for r in rows:
        g = groups.setdefault(r["horizon"], {"action": {}, "band": {}, "symbol": {}, "all": {}})
        for kind, key in (("action", r["action"]), ("band", _band(r["confidence"])),
                          ("symbol", r["symbol"]), ("all", "all")):
            g[kind].setdefault(key, []).append(r)
    for h in sorted(groups):
        g = groups[h]
        horizons[str(h)] = {
            "overall": _stats(g["all"].get("all", [])),
            "by_action": {k: _stats(v) for k, v in sorted(g["action"].items())},
            "by_confidence": {k: _stats(v) for k, v in sorted(g["band"].items())},
            "by_symbol": {k: _stats(v) for k, v in sorted(g["symbol"].items())},
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


# -- replay ------------------------------------------------------------------------------------
def close_time(session: str) -> str:
    """16:30 Sydney on ``session`` (after the closing auction) as an ISO UTC timestamp."""
    t = datetime.combine(date.fromisoformat(session), time(16, 30), _tz())
    return t.astimezone(timezone.utc).isoformat(timespec="microseconds")


def replay(store: Store, cfg: Any, get_bars: GetBars, symbols: Iterable[str], *,
           source: str, start: str | None = None, end: str | None = None, every: int = 1,
           today: date | None = None) -> JSON:
    """Predict each ``every``-th session of each symbol's history as if at its close, store the
    predictions (origin 'replay', replacing an earlier replay of the same source), then score
    their outcomes. Returns ``{run_id, predictions, by_action, outcomes: evaluate(...)}``."""
    from trading.market.summary import summarize  # numpy: only the replay pays for it

    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise InvalidParams("every must be a positive integer")
    run_id = f"replay:{source}"
    try:
        index_bars = list(get_bars(INDEX, "10y", source).get("bars") or [])
    except NotFound as exc:
        # No index file in the folder: the context is the flagged NEUTRAL fallback, as
        # backtest and train have it, rather than no replay at all.
        logger.warning("replay without %s (%s): market context NEUTRAL (fallback)", INDEX, exc)
        index_bars = []
    index_dates = [str(b["date"])[:10] for b in index_bars]

    made: list[JSON] = []
    inputs: dict[int, JSON] = {}
    for symbol in symbols:
        bars = list(get_bars(symbol, "10y", source).get("bars") or [])
        for i in range(REPLAY_WARMUP, len(bars), every):
            session = str(bars[i]["date"])[:10]
            if (start and session < start) or (end and session > end):
                continue
            j = bisect.bisect_right(index_dates, session)
            market = summarize(symbol, bars[max(0, i + 1 - REPLAY_LOOKBACK):i + 1],
                               index_bars[max(0, j - REPLAY_LOOKBACK):j], cfg)
            market.update(source=source, stale=False, age_s=0)
            p = rules.decide(market, None, None, cfg, created_at=close_time(session))
            inputs[len(made)] = {"market": market, "sentiment": None, "model": None}
            made.append(p)
    with store.transaction() as db:
        db.execute("DELETE FROM predictions WHERE run_id = ?", (run_id,))
    # record() keys inputs by symbol; a replay has many per symbol, so store in chunks by row.
    for k, p in enumerate(made):
        p["_k"] = k
    _record_many(store, made, inputs, source=source, run_id=run_id)
    by_action: dict[str, int] = {}
    for p in made:
        by_action[p["action"]] = by_action.get(p["action"], 0) + 1
    # Only this replay's predictions, on the bars it was replayed from.
    outcome = evaluate(store, get_bars, today=today, source=source)
    return {"run_id": run_id, "predictions": len(made), "by_action": by_action,
            "outcomes": outcome}


def _record_many(store: Store, made: list[JSON], inputs: dict[int, JSON], *, source: str,
                 run_id: str) -> None:
    with store.transaction() as db:
        for p in made:
            k = p.pop("_k")
            inp = inputs[k]
            p["created_at"] = canonical_time(p["created_at"])
            session = base_session(inp["market"], p["created_at"])
            p["session"] = session
            db.execute(
                "INSERT INTO predictions (symbol, created_at, session, action, confidence, score,"
                " price, market_context, model_version, data_stale, source, origin, run_id,"
                " prediction, inputs) VALUES (?,?,?,?,?,?,?,?,?,?,?,'replay',?,?,?)",
                (p["symbol"], p["created_at"], session, p["action"], p["confidence"],
                 p.get("score"), p.get("price"), p.get("market_context"), None,
                 int(bool(p.get("data_stale"))), source, run_id, _dumps(p), _dumps(inp)))


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]
