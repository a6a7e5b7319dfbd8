"""The prediction log (the ledger): predictions stored with the inputs that made them.

Every prediction is stored with its inputs (the market-data and sentiment answers and the
model probability), so any prediction can be explained and re-decided later. Predictions and
their events are written in one transaction; the events go to Redis after it commits
(:mod:`trading.signals.events`). A prediction read back (:func:`latest`, :func:`history`)
carries the outcomes scored so far (:mod:`trading.signals.outcomes`).

A prediction is *based* on one session (:func:`base_session`): the session date of the last
bar it saw (market-data's ``as_of``; for a prediction without it, the Sydney date it was
made). Outcome scoring counts its horizons from that session.

Provenance (issue 16): each row says what kind of data it came from (``data_source``: yahoo,
csv or sample, :func:`source_kind`; sample bars are synthetic and reports leave them out by
default), the session of the last bar it saw (``as_of``), and the calibrated probability
that it is right after 1 and 5 sessions (``probability_1``, ``probability_5``; NULL when
there was too little history to calibrate, see :mod:`trading.signals.calibration`).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timezone
from typing import Any

from trading import clock
from trading.errors import InvalidParams, NotFound
from trading.runtime.store import Store
from trading.signals import events as _events
from trading.signals import outcomes as _outcomes

logger = logging.getLogger(__name__)

JSON = dict[str, Any]
MAX_LIMIT = 1000


# Built once: json.dumps with options builds an encoder on every call (a replay stores two
# JSON texts a prediction, hundreds of thousands of them).
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str)


def dumps(obj: Any) -> str:
    """The stored JSON text of a prediction or its inputs."""
    return _ENCODER.encode(obj)


def sydney_date(created_at: str) -> str:
    """The Sydney calendar date (YYYY-MM-DD) of an ISO timestamp (naive means UTC)."""
    t = datetime.fromisoformat(created_at)
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return t.astimezone(clock.sydney()).date().isoformat()


def base_session(market: Mapping | None, created_at: str) -> str:
    """The session a prediction is based on: the last bar it saw, else its Sydney date."""
    as_of = market.get("as_of") if isinstance(market, Mapping) else None
    if isinstance(as_of, str) and len(as_of) >= 10:
        try:
            return date.fromisoformat(as_of[:10]).isoformat()
        except ValueError:
            pass
    return sydney_date(created_at)


def canonical_time(ts: str) -> str:
    """An ISO timestamp as UTC with microseconds, the one text form stored (so text order is
    time order); a naive timestamp is taken as UTC."""
    t = datetime.fromisoformat(ts)
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    try:
        t = t.astimezone(timezone.utc)
    except OverflowError:
        # A moment on 1 January of year 1 or 31 December 9999 whose offset takes it past the
        # calendar's edge (``--since 0001-01-01`` is read in Sydney time): as far as any
        # stored time can be, so the edge itself compares the same.
        t = (datetime.min if t.year == 1 else datetime.max).replace(tzinfo=timezone.utc)
    return t.isoformat(timespec="microseconds")


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


# -- writing -----------------------------------------------------------------------------------
def record(store: Store, predictions: Sequence[JSON], inputs: Mapping[str, JSON], *,
           source: str | None, run_id: str, origin: str = "live",
           emit: bool = True) -> list[JSON]:
    """Store predictions (with ``inputs[symbol]``) and, if ``emit``, one event each.

    Sets ``id`` on each prediction; returns the events written (publish them after this)."""
    written: list[JSON] = []
    with store.transaction() as db:
        for p in predictions:
            insert(db, p, inputs.get(p["symbol"], {}), source=source, origin=origin,
                   run_id=run_id)
            if emit:
                written.append(_events.append(db, "prediction", p, created_at=p["created_at"]))
    return written


# Who made a prediction whose JSON names no predictor (stored before predictors were
# recorded): the rules, as outcomes.PREDICTOR_SQL says.
RULES = "trading.signals.rules:predict"


def insert(db, p: JSON, inputs: JSON, *, source: str | None, origin: str, run_id: str) -> int:
    """Write one prediction row with ``db`` (inside the caller's transaction): one INSERT.

    Sets ``created_at`` (canonical), ``session`` and ``id`` on ``p``. The stored JSON is
    ``p`` without its ``id``: the id is the row's and is only known after the INSERT, and every
    reader (:func:`latest`, :func:`history`) takes it from the row. The ``predictor`` and
    ``strength`` columns repeat the JSON's, for the scorecard (migration 0012)."""
    p.pop("id", None)
    p["created_at"] = canonical_time(p["created_at"])
    p["session"] = base_session(inputs.get("market"), p["created_at"])
    used = _market_source(inputs.get("market")) or source
    p["data_source"] = source_kind(used)
    market = inputs.get("market")
    as_of = market.get("as_of") if isinstance(market, Mapping) else None
    p["as_of"] = as_of[:10] if isinstance(as_of, str) and len(as_of) >= 10 else None
    probability = p.get("probability") or {}
    made_by = p.get("predictor")
    made_by = made_by.get("name") if isinstance(made_by, Mapping) else None
    cur = db.execute(
        "INSERT INTO predictions (symbol, created_at, session, action, confidence, score,"
        " price, market_context, model_version, data_stale, source, origin, run_id,"
        " prediction, inputs, data_source, as_of, probability_1, probability_5, predictor,"
        " strength) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (p["symbol"], p["created_at"], p["session"], p["action"], p["confidence"],
         p.get("score"), p.get("price"), p.get("market_context"), p.get("model_version"),
         int(bool(p.get("data_stale"))), used, origin, run_id, dumps(p), dumps(inputs),
         p["data_source"], p["as_of"], probability.get("1"), probability.get("5"),
         RULES if made_by is None else made_by, p.get("strength")))
    p["id"] = cur.lastrowid
    return p["id"]


def source_kind(spec: str | None) -> str | None:
    """``yahoo``, ``csv`` or ``sample`` for a source spec (``csv:/dir`` is ``csv``)."""
    if not isinstance(spec, str):
        return None
    kind = spec.split(":", 1)[0]
    return kind if kind in ("yahoo", "csv", "sample") else None


def _market_source(market: Any) -> str | None:
    """The source market-data answered from (``yahoo``, ``sample``, ``csv:/dir``), which
    is where the outcome's bars must come from too."""
    src = market.get("source") if isinstance(market, Mapping) else None
    return src if isinstance(src, str) and src else None


# -- reading -----------------------------------------------------------------------------------
def _prediction(row) -> JSON:
    p = json.loads(row["prediction"])
    p["id"] = row["id"]
    return p


def latest(store: Store, symbol: str, inputs: bool = False) -> JSON:
    rows = store.query("SELECT id, prediction, inputs FROM predictions WHERE symbol = ? "
                       "ORDER BY created_at DESC, id DESC LIMIT 1", (symbol,))
    if not rows:
        raise NotFound(f"no prediction for {symbol} yet (run `trading predict {symbol}`)",
                       symbol=symbol)
    p = _prediction(rows[0])
    if inputs:
        p["inputs"] = json.loads(rows[0]["inputs"])
    p["outcomes"] = _outcomes.by_prediction(store, [p["id"]]).get(p["id"], {})
    return p


def latest_each(store: Store) -> list[JSON]:
    """The latest prediction of every symbol, newest first, each with its ``source``,
    ``origin``, the market data's ``as_of`` and ``age_s``, and its outcomes so far."""
    rows = store.query(
        "SELECT id, prediction, source, origin, inputs FROM predictions p WHERE id = ("
        " SELECT q.id FROM predictions q WHERE q.symbol = p.symbol"
        " ORDER BY q.created_at DESC, q.id DESC LIMIT 1)"
        " ORDER BY created_at DESC, symbol")
    out = []
    for r in rows:
        p = _prediction(r)
        market = (json.loads(r["inputs"]) or {}).get("market") or {}
        p.update(source=r["source"] or market.get("source"), origin=r["origin"],
                 as_of=market.get("as_of"), age_s=market.get("age_s"))
        out.append(p)
    outcomes = _outcomes.by_prediction(store, [p["id"] for p in out])
    for p in out:
        p["outcomes"] = outcomes.get(p["id"], {})
    return out


def _parse_since(since: Any) -> str | None:
    if since is None:
        return None
    if not isinstance(since, str):
        raise InvalidParams("since must be an ISO date or date-time string")
    try:
        t = datetime.fromisoformat(since)
    except ValueError as exc:
        raise InvalidParams(f"since={since!r} is not an ISO date or date-time") from exc
    if t.tzinfo is None:  # a trader's "since 2 October" is Sydney's, as TRADING_NOW is
        from zoneinfo import ZoneInfo

        t = t.replace(tzinfo=ZoneInfo("Australia/Sydney"))
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
    outcomes = _outcomes.by_prediction(store, [p["id"] for p in out])
    for p in out:
        p["outcomes"] = outcomes.get(p["id"], {})
    return out
