"""The dashboard's reads of the prediction log, one stream at a time.

A prediction belongs to one stream: its origin (live or replay), the kind of data it was made
from (yahoo, csv, sample), the predictor that made it and the bar interval (``1d`` so far):
:func:`trading.signals.ledger.stream_of`. A view that mixed them would draw a csv replay's
calls of real CBA (about A$160) over sample candles (about A$15), or list a symbol's old rules
call among a plugged predictor's. So every view here selects one stream
(:func:`selection`) and says which.

- :func:`available`: the streams stored (of one symbol), for the pages' links to the others.
- :func:`overview`: per symbol of a stream, its latest call with what it was before ("was
  HOLD") and since when it stands, the change on the day, and the market context once.
- :func:`in_words`: what the inputs of a call say, in words a trader reads.

Plain SQL over the read-only store; the stream's conditions are the ledger's
(:func:`trading.signals.ledger.stream_filter`), so a page and ``trading history`` select the
same rows, written so the indexes that lead with (origin, predictor) serve them: a page costs
a few index seeks per symbol, not a read of every prediction (migration 0016).

The module is long because choosing a stream, finding what is stored of it and saying what
one call of it means are read together whenever a page changes what it shows; each is a
section below.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from typing import Any

from trading.errors import InvalidParams
from trading.runtime.store import Store
from trading.signals import ledger
from trading.web.formatting import owner, predictor_label

JSON = dict[str, Any]
KEYS = ("origin", "source", "predictor")
RUN_LOOKBACK = 500  # calls read back to find since when a call stands
INTERVAL = "1d"


def selection(params: Mapping[str, Any], default: Mapping[str, str | None]) -> JSON:
    """The stream a page shows: ``origin``, ``source`` and ``predictor`` from the query
    (an empty value or none: the default's), checked as the ledger checks them (a bad one is
    :class:`~trading.errors.InvalidParams`)."""
    chosen = {k: (params.get(k) or default.get(k) or None) for k in KEYS}
    ledger.stream_filter(*(chosen[k] for k in KEYS))  # raises on a bad value
    return {**chosen, "interval": INTERVAL}


def choose(params: Mapping[str, Any], default: Mapping[str, str | None],
           stored: list[JSON], fallback: Mapping[str, Any] | None = None) -> JSON:
    """One stream from a page's query. Nothing asked: ``default``, or when it holds nothing
    and a ``fallback`` is given, the newest stream ``stored`` that matches the fallback (the
    overview: any source of the live calls of the configured predictor). A part asked
    (``?origin=replay``) is completed from the newest stored stream that matches it, so a
    page never mixes two streams because a part was left out."""
    asked = {k: params.get(k) or None for k in KEYS}
    if not any(asked.values()):
        chosen: dict[str, Any] = {k: default.get(k) for k in KEYS}
        if fallback is not None and not any(same(chosen, s) for s in stored):
            match = next((s for s in stored if same(fallback, s)), None)
            if match is not None:
                chosen = _parts(match)
    else:
        selection(asked, {})  # a bad value is refused before it is looked for
        match = next((s for s in stored if same(asked, s)), None)
        chosen = {k: asked[k] or (_parts(match)[k] if match else None) for k in KEYS}
    return selection(chosen, {})


def _parts(s: Mapping[str, Any]) -> dict[str, Any]:
    return {"origin": s["origin"], "predictor": s["predictor"],
            "source": None if s["source"] == "unknown" else s["source"]}


def query_of(stream: Mapping[str, Any]) -> str:
    """The query string that selects ``stream`` (for links)."""
    from urllib.parse import urlencode

    return urlencode([(k, stream[k]) for k in KEYS if stream.get(k)])


def _where(stream: Mapping[str, Any]) -> tuple[str, list[Any]]:
    """The stream's SQL conditions: the ledger's (:func:`ledger.stream_filter`), but a whole
    predictor name as a plain ``predictor = ?`` (every row has one since migration 0012), so
    the indexes that lead with (origin, predictor) serve it."""
    pred = stream.get("predictor")
    full = isinstance(pred, str) and ":" in pred
    where, params = ledger.stream_filter(stream.get("origin"), stream.get("source"),
                                         None if full else pred)
    if full:
        where.append("predictor = ?")
        params.append(pred)
    return "".join(f" AND {w}" for w in where), params


def _full(stream: Mapping[str, Any]) -> tuple | None:
    """(origin, predictor, kind) when the stream names all three, for the index's seeks."""
    origin, pred, src = (stream.get(k) for k in ("origin", "predictor", "source"))
    if origin and isinstance(pred, str) and ":" in pred and src:
        return (origin, pred, src.split(":", 1)[0])
    return None


def available(store: Store, symbol: str | None = None) -> list[JSON]:
    """The streams stored (that hold calls of ``symbol``), newest first: each with the time
    of its latest call and the query that selects it.

    A few index seeks a stream (migration 0016: ``predictions_by_stream``), never a read of
    every prediction; a store without that index is read whole instead."""
    try:
        found = list(_stream_keys(store, symbol))
    except sqlite3.OperationalError as exc:
        if "no such index" not in str(exc):
            raise
        found = _stream_keys_by_scan(store, symbol)
    out = []
    for origin, predictor, kind, latest in sorted(found, key=lambda f: f[3], reverse=True):
        s = ledger.stream_of(origin, kind or None, predictor)
        s.update(latest=latest, label=label(predictor),
                 query=query_of({"origin": origin, "source": kind or None,
                                 "predictor": predictor}))
        out.append(s)
    return out


_BY_STREAM = "predictions INDEXED BY predictions_by_stream"
_KIND = "coalesce(data_source, '')"


def _next(store: Store, sql: str, params: tuple) -> Any:
    rows = store.query(sql, params)
    return tuple(rows[0]) if rows else None


def _stream_keys(store: Store, symbol: str | None):
    """(origin, predictor, kind, latest) of every stream, by skip-scans over the index."""
    origin: tuple | None = ("",)
    while (origin := _next(store, f"SELECT origin FROM {_BY_STREAM} WHERE origin > ?"
                                  " ORDER BY origin LIMIT 1", origin)) is not None:
        pred: tuple | None = ("",)
        while (pred := _next(store, f"SELECT predictor FROM {_BY_STREAM} WHERE origin = ?"
                                    " AND predictor > ? ORDER BY predictor LIMIT 1",
                             (origin[0], pred[0]))) is not None:
            yield from _kinds(store, (origin[0], pred[0]), symbol)


def _kinds(store: Store, pair: tuple, symbol: str | None):
        kind: tuple = ("",)
        first = True
        while (kind := _next(store, f"SELECT {_KIND} FROM {_BY_STREAM} WHERE origin = ?"
                                    f" AND predictor = ? AND {_KIND} {'>=' if first else '>'}"
                                    f" ? ORDER BY {_KIND} LIMIT 1",
                             (*pair, "" if first else kind[0]))) is not None:
            first = False
            stream = (*pair, kind[0])
            syms = [symbol] if symbol else list(stream_symbols(store, stream))
            times = [t for t in (_latest_time(store, stream, s) for s in syms) if t]
            if times:
                yield (*stream, max(times))


def stream_symbols(store: Store, stream: tuple):
    """The symbols of one (origin, predictor, kind), by a skip-scan over the index."""
    sym = ("",)
    while (sym := _next(store, f"SELECT symbol FROM {_BY_STREAM} WHERE origin = ?"
                               f" AND predictor = ? AND {_KIND} = ? AND symbol > ?"
                               " ORDER BY symbol LIMIT 1", (*stream, sym[0]))) is not None:
        yield sym[0]


def _latest_time(store: Store, stream: tuple, symbol: str) -> str | None:
    rows = store.query(f"SELECT max(created_at) AS t FROM {_BY_STREAM} WHERE origin = ?"
                       f" AND predictor = ? AND {_KIND} = ? AND symbol = ?", (*stream, symbol))
    return rows[0]["t"] if rows else None


def _stream_keys_by_scan(store: Store, symbol: str | None) -> list[tuple]:
    rows = store.query(
        f"SELECT origin, predictor, {_KIND} AS kind, max(created_at) AS latest"
        " FROM predictions" + (" WHERE symbol = ?" if symbol else "")
        + " GROUP BY 1, 2, 3", (symbol,) if symbol else ())
    return [(r["origin"], r["predictor"], r["kind"], r["latest"]) for r in rows]


def label(predictor: str | None) -> str:
    """``rules`` for the built-in rules, the module's last part for another (as
    :func:`trading.signals.predictors.label`, without importing it)."""
    return predictor_label(predictor)


def same(stream: Mapping[str, Any], other: Mapping[str, Any]) -> bool:
    """Whether stored stream ``other`` is the one ``stream`` selects."""
    pred = stream.get("predictor")
    return ((not stream.get("origin") or stream["origin"] == other["origin"])
            and (not stream.get("source") or stream["source"].split(":", 1)[0]
                 == other["source"])
            and (not pred or pred == other["predictor"] or
                 (":" not in pred and label(other["predictor"]) == pred)))


# -- the overview ------------------------------------------------------------------------------
def overview(store: Store, stream: Mapping[str, Any]) -> JSON:
    """The latest call of every symbol in ``stream``, newest first, each with ``was`` (the
    last call of the session before, its action and session), ``since`` (the first session
    of the call's unbroken run), ``change`` (on the day: the price against the session
    before's close) and ``words`` (:func:`in_words`); and ``market``: the market context of
    the newest call, said once for the page."""
    cond, params = _where(stream)
    full = _full(stream)
    try:
        symbols = list(stream_symbols(store, full)) if full else None
    except sqlite3.OperationalError as exc:
        if "no such index" not in str(exc):
            raise
        symbols = None
    if symbols is None:
        symbols = [r["symbol"] for r in store.query(
            "SELECT DISTINCT symbol FROM predictions WHERE 1" + cond, tuple(params))]
    calls = []
    for sym in symbols:
        ids = store.query(
            "SELECT id FROM predictions WHERE symbol = ?" + cond
            + " ORDER BY created_at DESC, id DESC LIMIT 1", (sym, *params))
        rows = store.query(
            "SELECT id, prediction, inputs, source, origin, data_source, predictor, session"
            " FROM predictions WHERE id = ?", (ids[0]["id"],)) if ids else []
        if rows:
            calls.append(_call(store, rows[0], cond, params))
    calls.sort(key=lambda p: (p["created_at"], p["symbol"]), reverse=True)
    market = next((p["market"] for p in calls if p.get("market")), None)
    for p in calls:
        m = p.pop("market")
        p["market_differs"] = bool(m and market and m.get("as_of") != market.get("as_of"))
        if p["market_differs"]:
            p["market_own"] = m
    return {"calls": calls, "market": market}


def _call(store: Store, row, cond: str, params: list[Any]) -> JSON:
    p = json.loads(row["prediction"])
    p["id"] = row["id"]
    p["stream"] = ledger.stream_of(row["origin"], row["data_source"], row["predictor"],
                                   p.get("interval"))  # in the JSON since migration 0017
    p["predictor_label"] = label(row["predictor"])
    inputs = json.loads(row["inputs"]) or {}
    market = inputs.get("market") if isinstance(inputs.get("market"), dict) else {}
    p.update(source=row["source"] or market.get("source"), origin=row["origin"],
             as_of=market.get("as_of") or p.get("as_of"), age_s=market.get("age_s"))
    sym, session = p["symbol"], row["session"]
    # The last call of the session before: that session (a seek), then its last call.
    prev = store.query("SELECT session FROM predictions WHERE symbol = ? AND session < ?" + cond
                       + " ORDER BY session DESC LIMIT 1", (sym, session, *params))
    before = store.query(
        "SELECT action, session, price, as_of FROM predictions WHERE symbol = ? AND session = ?"
        + cond + " ORDER BY created_at DESC, id DESC LIMIT 1",
        (sym, prev[0]["session"], *params)) if prev else []
    p["was"] = ({"action": before[0]["action"], "session": before[0]["session"]}
                if before else None)
    # The run: the first session after the last call of another action, among the last
    # RUN_LOOKBACK calls (a run longer than that is "since at least").
    recent = store.tuples(
        "SELECT session, action FROM predictions WHERE symbol = ? AND session <= ?" + cond
        + " ORDER BY session DESC LIMIT ?", (sym, session, *params, RUN_LOOKBACK))
    p["since"], p["since_at_least"], seen = session, False, 0
    for day, action in recent:  # read lazily: it stops at the first other call
        seen += 1
        if action != p["action"]:
            break
        p["since"] = day
    else:
        p["since_at_least"] = seen == RUN_LOOKBACK
    recent.close()
    p["change"] = change_on_day(store, p, before[0] if before else None)
    ctx = market.get("market_context") if isinstance(market.get("market_context"), dict) \
        else None
    p["market"] = ({**ctx, "as_of": market.get("as_of")} if ctx else None)
    p["words"] = in_words(p, market, inputs.get("sentiment"))
    p["reasons_own"] = own_reasons(p)
    p["probability_text"] = probability_text(p)
    return p


def history(store: Store, stream: Mapping[str, Any], symbol: str | None = None,
            limit: int = 100, inputs: bool = False) -> list[JSON]:
    """The predictions of ``stream`` (of ``symbol``), newest first, each with its ``stream``
    and outcomes: what :func:`trading.signals.ledger.history` answers, by the stream's index
    (a page of a live stream beside a long replay of the same symbol reads only its rows)."""
    from trading.signals import outcomes

    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
        raise InvalidParams("limit must be an integer from 1 to 1000")
    cond, params = _where(stream)
    rows = store.query(
        "SELECT id, prediction, origin, data_source, predictor"
        + (", inputs" if inputs else "") + " FROM predictions WHERE "
        + ("symbol = ?" if symbol else "1") + cond
        + " ORDER BY created_at DESC, id DESC LIMIT ?",
        (*([symbol] if symbol else []), *params, limit))
    out = []
    for r in rows:
        p = json.loads(r["prediction"])
        p["id"] = r["id"]
        p["stream"] = ledger.stream_of(r["origin"], r["data_source"], r["predictor"],
                                       p.get("interval"))
        if inputs:
            p["inputs"] = json.loads(r["inputs"])
        out.append(p)
    scored = outcomes.by_prediction(store, [p["id"] for p in out])
    for p in out:
        p["outcomes"] = scored.get(p["id"], {})
    return out


def markers(store: Store, symbol: str, stream: Mapping[str, Any],
            since: str | None = None, interval: str = INTERVAL) -> list[JSON]:
    """One chart marker per bar of ``symbol`` in ``stream`` (since ``since``) that its calls
    at ``interval`` were made from, the last call made on it, oldest first: per session on
    ``1d`` (the timers call every 30 minutes), per intraday bar (``time`` its stamp, the
    market answer's ``as_of``) on ``1h``, ``30m`` and ``15m``."""
    cond, params = _where(stream)
    bar = "session" if interval == INTERVAL else "json_extract(inputs, '$.market.as_of')"
    rows = store.query(
        f"SELECT id, {bar} AS bar, action, confidence FROM predictions WHERE symbol = ?"
        " AND interval = ?" + (" AND session >= ?" if since else "") + cond
        + " ORDER BY session, created_at, id",
        (symbol, interval, *([since[:10]] if since else []), *params))
    marks: dict[str, JSON] = {}
    for r in rows:
        if r["bar"]:
            marks[r["bar"]] = {"time": r["bar"], "action": r["action"],
                               "confidence": r["confidence"], "id": r["id"]}
    return list(marks.values())


def change_on_day(store: Store, p: Mapping[str, Any], before) -> JSON | None:
    """The call's price against the close of the session before its data's last session:
    that close from the bar cache of the call's own source when it is there, else the
    price of the stream's last call of the session before (a replay's, or a live final run's,
    is that close). None when neither is known."""
    price = p.get("price")
    as_of = (p.get("as_of") or p.get("session") or "")[:10]
    if not isinstance(price, (int, float)) or not price or not as_of:
        return None
    src = p.get("source")
    if isinstance(src, str) and src:
        try:
            rows = store.query(
                "SELECT session, close FROM bars WHERE source = ? AND symbol = ?"
                " AND interval = ? AND session < ? ORDER BY session DESC LIMIT 1",
                (src, p["symbol"], INTERVAL, as_of))
        except sqlite3.OperationalError:  # a store without the bar cache: the fallback below
            rows = []
        if rows and rows[0]["close"]:
            prev = rows[0]["close"]
            return {"value": price / prev - 1, "previous": prev, "from": rows[0]["session"],
                    "basis": "close"}
    if before is not None and isinstance(before["price"], (int, float)) and before["price"]:
        return {"value": price / before["price"] - 1, "previous": before["price"],
                "from": before["session"], "basis": "call"}
    return None


def probability_text(p: Mapping[str, Any]) -> JSON:
    """The probability a trader can use: the calibrated one that the call is right after one
    session when there is one, else the predictor's own confidence, labelled as its own."""
    prob = p.get("probability") if isinstance(p.get("probability"), dict) else {}
    one = prob.get("1")
    if isinstance(one, (int, float)):
        return {"value": one, "kind": "calibrated",
                "text": f"{one * 100:.0f}% right after 1 session (calibrated)"}
    conf = p.get("confidence")
    return {"value": conf, "kind": "own",
            "text": (f"{conf:.2f}: {owner(label_of(p))} own confidence, not a calibrated "
                     "probability"
                     if isinstance(conf, (int, float)) else "-")}


def label_of(p: Mapping[str, Any]) -> str:
    made = p.get("predictor")
    return label(made.get("name") if isinstance(made, Mapping) else made)


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def in_words(p: Mapping[str, Any], market: Mapping[str, Any] | None,
             sentiment: Any = None) -> list[str]:
    """What a call's inputs say, in words: the trend against the 20-session average, RSI,
    MACD, news and volume. The same for every predictor (they all see these inputs); the
    predictor's own reasons are shown beside them."""
    tech = (market or {}).get("technical") or {}
    vol = (market or {}).get("volume") or {}
    out = []
    sma = _num(tech.get("price_vs_sma20"))
    if sma is not None:
        out.append(f"price {abs(sma):.1f}% {'above' if sma >= 0 else 'below'} its 20-day "
                   "average")
    rsi = _num(tech.get("rsi") if tech.get("rsi") is not None else p.get("rsi"))
    if rsi is not None:
        out.append(f"RSI {rsi:.0f}" + (": overbought" if rsi >= 70 else
                                       ": oversold" if rsi <= 30 else ""))
    macd = _num(tech.get("macd_histogram"))
    if macd is not None:
        out.append("momentum (MACD) " + ("rising" if macd > 0 else
                                         "falling" if macd < 0 else "flat"))
    score = _num(p.get("sentiment_score"))
    if score is None and isinstance(sentiment, Mapping):
        score = _num(sentiment.get("score"))
    if score is not None:
        tone = ("positive" if score > 0.1 else "negative" if score < -0.1 else "neutral")
        out.append(f"news {tone} ({score:+.2f})")
    else:
        out.append("no news score")
    trend = _num(vol.get("volume_trend"))
    if trend is not None:
        out.append("volume " + (f"{trend * 100:.0f}% above" if trend > 0.1 else
                                f"{-trend * 100:.0f}% below" if trend < -0.1 else "near")
                   + " its 20-day average")
    return out


def own_reasons(p: Mapping[str, Any]) -> list[str]:
    """The predictor's reasons without the market line the page says once at the top."""
    reasons = p.get("reasons") if isinstance(p.get("reasons"), list) else []
    ctx = p.get("market_context")
    return [r for r in reasons if not (isinstance(r, str) and isinstance(ctx, str)
                                       and r.startswith(f"market {ctx}"))]
