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

Streams (issue 30): a prediction belongs to one stream, its origin (live or replay), data
source kind, predictor and interval (:func:`stream_of`); readers return it as ``stream`` and
select streams with :func:`stream_filter` (``trading history``, the dashboard), and
:func:`streams` says which are stored, so a view can name the ones it does not show.

Intervals (issue 29): a prediction is made from daily bars (``1d``) or from the completed
bars of an intraday interval (``1h``, ``30m``, ``15m``); the row's ``interval`` column
(migration 0017; older rows are ``1d``) is the one :func:`insert` is given, else the
market-data answer's ``interval``, else ``1d``. :func:`last_bar` is the bar the stream's
latest call of a symbol was made from, so a run that finds no newer completed bar stores
nothing twice.

The module is long because writing a prediction, reading it back and telling its streams
apart all work on the one row layout; each is a section below.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timezone
from typing import Any

from trading import clock
from trading.config import PREDICTOR_INTERVALS
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
           emit: bool = True, interval: str | None = None) -> list[JSON]:
    """Store predictions (with ``inputs[symbol]``) and, if ``emit``, one event each;
    ``interval``: the bars they were made from (None: each market answer's, else ``1d``).

    Sets ``id`` on each prediction; returns the events written (publish them after this)."""
    written: list[JSON] = []
    with store.transaction() as db:
        for p in predictions:
            insert(db, p, inputs.get(p["symbol"], {}), source=source, origin=origin,
                   run_id=run_id, interval=interval)
            if emit:
                written.append(_events.append(db, "prediction", p, created_at=p["created_at"]))
    return written


# Who made a prediction whose JSON names no predictor (stored before predictors were
# recorded): the rules, as outcomes.PREDICTOR_SQL says.
RULES = "trading.signals.rules:predict"


def insert(db, p: JSON, inputs: JSON, *, source: str | None, origin: str, run_id: str,
           interval: str | None = None) -> int:
    """Write one prediction row with ``db`` (inside the caller's transaction): one INSERT of
    :func:`row`. Sets ``id`` on ``p`` as well."""
    p["id"] = db.execute(INSERT, row(p, inputs, source=source, origin=origin, run_id=run_id,
                                     interval=interval)).lastrowid
    return p["id"]


INSERT = ("INSERT INTO predictions (symbol, created_at, session, action, confidence, score,"
          " price, market_context, model_version, data_stale, source, origin, run_id,"
          " prediction, inputs, data_source, as_of, probability_1, probability_5, predictor,"
          " strength, interval) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)")


def row(p: JSON, inputs: JSON, *, source: str | None, origin: str, run_id: str,
        interval: str | None = None) -> tuple:
    """The values of :data:`INSERT` for one prediction; touches no database (a replay builds
    them in its reader process, beside the writing).

    Sets ``created_at`` (canonical), ``session``, ``interval`` (:func:`interval_of`) on ``p``
    and drops its ``id``. The stored JSON is ``p`` without its ``id``: the id is the row's and
    is only known after the INSERT, and every reader (:func:`latest`, :func:`history`) takes
    it from the row. The ``predictor`` and ``strength`` columns repeat the JSON's, for the
    scorecard (migration 0012)."""
    p.pop("id", None)
    p["created_at"] = canonical_time(p["created_at"])
    p["session"] = base_session(inputs.get("market"), p["created_at"])
    used = _market_source(inputs.get("market")) or source
    p["data_source"] = source_kind(used)
    market = inputs.get("market")
    as_of = market.get("as_of") if isinstance(market, Mapping) else None
    p["as_of"] = as_of[:10] if isinstance(as_of, str) and len(as_of) >= 10 else None
    p["interval"] = interval_of(market, interval)
    if p["interval"] != DAILY and isinstance(as_of, str):
        p["bar"] = as_of  # the stamp of the last complete bar it saw (2024-04-05T15:00:00+11:00)
    probability = p.get("probability") or {}
    made_by = p.get("predictor")
    made_by = made_by.get("name") if isinstance(made_by, Mapping) else None
    return (p["symbol"], p["created_at"], p["session"], p["action"], p["confidence"],
            p.get("score"), p.get("price"), p.get("market_context"), p.get("model_version"),
            int(bool(p.get("data_stale"))), used, origin, run_id, dumps(p), dumps(inputs),
            p["data_source"], p["as_of"], probability.get("1"), probability.get("5"),
            RULES if made_by is None else made_by, p.get("strength"), p["interval"])


def interval_of(market: Any, interval: str | None = None) -> str:
    """The interval a prediction was made at: ``interval`` when given, else the market-data
    answer's (``get_market_data`` says it), else daily. Only :data:`INTERVALS` are stored."""
    if interval is None and isinstance(market, Mapping):
        interval = market.get("interval")
    interval = interval or DAILY
    if interval not in INTERVALS:
        raise InvalidParams(f"interval {str(interval)[:20]!r} not supported; use "
                            f"{', '.join(INTERVALS)}")
    return interval


def last_bar(store: Store, symbol: str, *, origin: str, source: str | None, predictor: str,
             interval: str) -> str | None:
    """The bar (market-data's ``as_of``: an intraday bar's stamp, a session's date) that the
    latest call of ``symbol`` in this stream was made from; None when the stream has none.
    ``source`` is a whole spec or a kind, as :func:`stream_filter` takes it."""
    where, params = stream_filter(origin, source, None, interval)
    rows = store.query(
        "SELECT json_extract(inputs, '$.market.as_of') AS bar FROM predictions"
        " WHERE symbol = ? AND predictor = ?" + "".join(f" AND {w}" for w in where)
        + " ORDER BY created_at DESC, id DESC LIMIT 1", (symbol, predictor, *params))
    return rows[0]["bar"] if rows else None


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


def latest(store: Store, symbol: str, inputs: bool = False, *, origin: Any = None,
           source: Any = None, predictor: Any = None) -> JSON:
    """A symbol's latest prediction (of the streams selected: :func:`stream_filter`), with
    its ``stream`` and outcomes so far."""
    where, params = stream_filter(origin, source, predictor)
    rows = store.query("SELECT id, prediction, inputs, origin, data_source, predictor,"
                       " interval FROM predictions WHERE symbol = ?"
                       + "".join(f" AND {w}" for w in where)
                       + " ORDER BY created_at DESC, id DESC LIMIT 1", (symbol, *params))
    if not rows:
        asked = ", ".join(f"{k} {v}" for k, v in (("origin", origin), ("source", source),
                                                   ("predictor", predictor)) if v)
        raise NotFound(f"no prediction for {symbol} yet" + (f" ({asked})" if asked else "")
                       + f" (run `trading predict {symbol}`)", symbol=symbol)
    p = _prediction(rows[0])
    p["stream"] = stream_of(rows[0]["origin"], rows[0]["data_source"], rows[0]["predictor"],
                            rows[0]["interval"])
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


# -- streams -----------------------------------------------------------------------------------
# A prediction belongs to one stream: its origin (live or replay), the kind of data it was made
# from (yahoo, csv, sample), the predictor that made it and the bar interval it was made at
# (1d, or an intraday one: issue 29).
DAILY = "1d"
INTERVAL = DAILY  # the interval of a row that names none (stored before migration 0017)
INTERVALS = PREDICTOR_INTERVALS  # 1d, 1h, 30m, 15m: declared once, in trading.config
ORIGINS = ("live", "replay")
MAX_FILTER_CHARS = 4096


def stream_of(origin: str | None, data_source: str | None, predictor: str | None,
              interval: str | None = None) -> JSON:
    """The stream a prediction row belongs to, as every reader shows it."""
    return {"origin": origin or "live", "source": data_source or "unknown",
            "predictor": predictor or RULES, "interval": interval or INTERVAL}


def _filter(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_FILTER_CHARS:
        raise InvalidParams(f"{name} must be a non-empty string")
    return value


def stream_filter(origin: Any = None, source: Any = None, predictor: Any = None,
                  interval: Any = None) -> tuple[list[str], list[Any]]:
    """SQL conditions (and their parameters) selecting streams.

    ``origin``: live or replay; ``source``: a kind (yahoo, csv, sample) or a whole spec
    (``csv:/dir``); ``predictor``: its ``module:Name`` or its short label (``rules``,
    ``momentum``: :func:`trading.signals.predictors.label`); ``interval``: 1d, 1h, 30m or
    15m."""
    where: list[str] = []
    params: list[Any] = []
    origin = _filter("origin", origin)
    if origin is not None:
        if origin not in ORIGINS:
            raise InvalidParams(f"origin must be live or replay, not {origin!r}")
        where.append("origin = ?")
        params.append(origin)
    source = _filter("source", source)
    if source is not None:
        if ":" in source:
            where.append("source = ?")
        else:
            where.append("coalesce(data_source, '') = ?")
        params.append(source)
    predictor = _filter("predictor", predictor)
    if predictor is not None:
        # Every row names its predictor (migration 0012 filled the old ones), so the plain
        # column: the indexes that lead with (origin, predictor) serve it.
        if ":" in predictor:
            where.append("predictor = ?")
            params.append(predictor)
        else:  # a label: the module's last part (momentum for predictors.momentum:X)
            like = predictor.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            where.append("(predictor LIKE ? ESCAPE '\\' OR predictor LIKE ? ESCAPE '\\')")
            params += [f"{like}:%", f"%.{like}:%"]
    interval = _filter("interval", interval)
    if interval is not None:
        if interval not in INTERVALS:
            raise InvalidParams(f"interval must be one of {', '.join(INTERVALS)}, not "
                                f"{interval[:20]!r}")
        where.append("interval = ?")
        params.append(interval)
    return where, params


def _of_symbol_since(where: list[str], params: list[Any], symbol: str | None, since: Any
                     ) -> tuple[list[str], list[Any]]:
    """``where`` and ``params`` narrowed to one symbol's calls and those made since a time."""
    if symbol is not None:
        where.append("symbol = ?")
        params.append(symbol)
    cutoff = _parse_since(since)
    if cutoff is not None:
        where.append("created_at >= ?")
        params.append(cutoff)
    return where, params


def streams(store: Store, symbol: str | None = None, since: Any = None) -> list[JSON]:
    """The streams stored (of one symbol, since a time), each with how many predictions it
    holds and its latest, newest stream first."""
    where, params = _of_symbol_since([], [], symbol, since)
    cond = "".join(f" AND {w}" for w in where)
    # Grouped as migration 0016's index (origin, predictor, coalesce(data_source, '')) orders
    # them: one pass over that index, no sort (a store without it answers the same, slower).
    rows = store.query(
        "SELECT origin, nullif(coalesce(data_source, ''), '') AS data_source, predictor,"
        " count(*) AS n, max(created_at) AS latest FROM predictions"
        + (" WHERE " + " AND ".join(where) if where else "")
        + " GROUP BY origin, predictor, coalesce(data_source, '')", tuple(params))
    # The intraday calls apart, from migration 0017's partial index (grouping the interval
    # with the rest sorted every row: 3.3 s instead of 0.35 s over a million predictions).
    intraday = store.query(
        "SELECT origin, nullif(coalesce(data_source, ''), '') AS data_source, predictor,"
        " interval, count(*) AS n, max(created_at) AS latest FROM predictions"
        f" WHERE interval != '{DAILY}'" + cond
        + " GROUP BY origin, predictor, coalesce(data_source, ''), interval", tuple(params))
    apart: dict[tuple, list] = {}
    for r in intraday:
        apart.setdefault((r["origin"], r["data_source"], r["predictor"]), []).append(r)
    out = []
    for r in rows:
        key = (r["origin"], r["data_source"], r["predictor"])
        parts = apart.get(key, [])
        daily, latest = r["n"] - sum(p["n"] for p in parts), r["latest"]
        if parts and daily and max(p["latest"] for p in parts) >= latest:
            # An intraday call is the group's newest: the daily calls' own newest.
            latest = store.query(
                "SELECT max(created_at) AS latest FROM predictions WHERE origin = ? AND"
                " predictor = ? AND coalesce(data_source, '') = ? AND interval = ?" + cond,
                (r["origin"], r["predictor"], r["data_source"] or "", DAILY, *params)
            )[0]["latest"]
        if daily:
            out.append({**stream_of(*key, DAILY), "predictions": daily, "latest": latest})
        out += [{**stream_of(*key, p["interval"]), "predictions": p["n"],
                 "latest": p["latest"]} for p in parts]
    return sorted(out, key=lambda s: s["latest"] or "", reverse=True)


def history(store: Store, symbol: str | None = None, since: Any = None,
            limit: Any = 100, inputs: bool = False, *, origin: Any = None, source: Any = None,
            predictor: Any = None, interval: Any = None) -> list[JSON]:
    """Stored predictions, newest first, each with its ``stream`` (:func:`stream_of`) and its
    ``outcomes`` by horizon; ``origin``, ``source``, ``predictor`` and ``interval`` select
    streams (:func:`stream_filter`; None: every one)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidParams(f"limit must be an integer from 1 to {MAX_LIMIT}")
    where, params = _of_symbol_since(*stream_filter(origin, source, predictor, interval),
                                     symbol, since)
    sql = ("SELECT id, prediction, inputs, origin, data_source, predictor, interval"
           " FROM predictions"
           + (" WHERE " + " AND ".join(where) if where else "")
           + " ORDER BY created_at DESC, id DESC LIMIT ?")
    rows = store.query(sql, (*params, limit))
    out = []
    for r in rows:
        p = _prediction(r)
        p["stream"] = stream_of(r["origin"], r["data_source"], r["predictor"], r["interval"])
        if inputs:
            p["inputs"] = json.loads(r["inputs"])
        out.append(p)
    outcomes = _outcomes.by_prediction(store, [p["id"] for p in out])
    for p in out:
        p["outcomes"] = outcomes.get(p["id"], {})
    return out
