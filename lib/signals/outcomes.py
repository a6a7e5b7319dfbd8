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
(:mod:`trading.signals.scorecard`). The module is long because both halves of an outcome's
life are here: how it is scored and how a million of them are read back for the report.
"""

from __future__ import annotations

import logging
import os
import sys
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
# From this many predictions on, accuracy() reads its rows in two processes (_read_halves):
# below it the fork costs more than it saves, and a small store stays one process.
TWO_PROCESSES = 200_000

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
        "SELECT p.id, p.symbol, p.session, p.action, p.origin, p.source, p.interval, p.price, "
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
            base = _made_at(r) or close[b]
            ret = close[e] / base - 1.0
            idx = (index_close[e] / index_close[b] - 1.0
                   if b in index_close and e in index_close else None)
            ok = is_right(r["action"], ret, h)
            new_rows.append((r["id"], h, b, e, base, close[e], ret, idx, int(ok), now))
            if r["origin"] == "live":
                new_events.append({"prediction_id": r["id"], "symbol": symbol,
                                   "action": r["action"], "horizon": h, "base_session": b,
                                   "end_session": e, "forward_return": round(ret, 6),
                                   "index_return": None if idx is None else round(idx, 6),
                                   "correct": ok})
        pending += waiting
    return pending


def _made_at(r) -> float | None:
    """The price an intraday call (issue 29: made from a completed 1h/30m/15m bar during the
    session) was made at, which its outcomes are counted from; None for a daily call, whose
    base is its session's close (or a row that does not say: a caller's own rows)."""
    try:
        interval, price = r["interval"], r["price"]
    except (KeyError, IndexError):
        return None
    return float(price) if interval not in (None, "1d") and price else None


OUTCOMES_INSERT = ("INSERT OR IGNORE INTO outcomes (prediction_id, horizon, base_session,"
                   " end_session, base_close, end_close, forward_return, index_return, correct,"
                   " evaluated_at) VALUES (?,?,?,?,?,?,?,?,?,?)")


# Which predictor made a stored prediction (docs/predictors.md); the rules before it was stored.
PREDICTOR_SQL = ("coalesce(json_extract(p.prediction, '$.predictor.name'), "
                 "'trading.signals.rules:predict')")


def latest_per_session(where: str = "") -> str:
    """A CTE ``p``: the predictions matching ``where`` (SQL over ``p``, may be empty), each
    with ``nth``, 1 for the latest of its symbol's session (per origin, predictor, data
    source and interval). The timer predicts every 30 minutes and the 13 runs of one session
    share one outcome, so whatever counts outcomes (the scorecard, the calibration's minimum)
    keeps ``nth = 1``: the run that saw the most of the session it is scored from."""
    return ("WITH p AS (SELECT p.*, row_number() OVER (PARTITION BY p.symbol, p.session,"
            f" p.origin, {PREDICTOR_SQL}, coalesce(p.data_source, ''), p.interval"
            " ORDER BY p.created_at"
            f" DESC, p.id DESC) AS nth FROM predictions p{' WHERE ' + where if where else ''})")


def accuracy(store: Store, origin: str | None = None, include_sample: bool = False,
             predictor: str | None = None, interval: str | None = None) -> JSON:
    """The scorecard of every scored prediction, per horizon
    (:func:`trading.signals.scorecard.horizon_card`): BUY/SELL and HOLD apart, each with its
    Wilson interval, beside the baselines over the same sessions, and the calibrated
    probability's Brier skill, ECE and reliability table; ``by_predictor`` has the same
    scorecard for each predictor apart (docs/predictors.md).

    ``origin`` ('live' or 'replay') restricts to one kind of prediction, ``predictor``
    (``module:Name``) to one predictor's; predictions made from synthetic ``sample`` data are
    left out unless ``include_sample``; ``interval`` (1d, 1h, 30m, 15m) restricts to the
    calls made at one bar interval. The calls of each interval fold and count apart (issue 29:
    a 1h call and a daily call of one session are two streams), and ``by_interval`` has each
    interval's ``{predictions, horizons, by_predictor, headlines}`` on its own.

    A store can hold a million replayed predictions (issue 26), so the rows are read once,
    from the ``predictions_scored`` and ``outcomes_scored`` indexes (migration 0012), one
    origin, predictor and symbol at a time, into numpy arrays: one row per prediction with
    its outcome at each horizon beside it (half of them by a forked child when there are
    :data:`TWO_PROCESSES` or more: :func:`_read_halves`). The index gives each session's runs
    latest first, so which run counts (:func:`latest_per_session`) is a comparison with the
    row before."""
    if origin not in (None, "live", "replay"):
        raise InvalidParams("origin must be 'live', 'replay' or null")
    if not isinstance(include_sample, bool):
        raise InvalidParams("include_sample must be true or false")
    if predictor is not None and not isinstance(predictor, str):
        raise InvalidParams("predictor must be a module:Name string or null")
    from trading.config import PREDICTOR_INTERVALS

    if interval is not None and interval not in PREDICTOR_INTERVALS:
        raise InvalidParams(f"interval must be one of {', '.join(PREDICTOR_INTERVALS)} or null")
    import numpy as np  # after the checks: a bad call costs no import

    from trading.signals import scorecard
    where, params = [], []
    if origin:
        where.append("p.origin = ?")
        params.append(origin)
    if predictor:
        where.append("p.predictor = ?")
        params.append(predictor)
    if interval:
        where.append("p.interval = ?")
        params.append(interval)
    # One range a symbol's calls from one origin, predictor and interval, read in the index's
    # order.
    # The runs of a session that fold into one (latest_per_session) share its data source
    # too; a symbol's calls nearly always have one, and one with more is read a source at a
    # time, so the runs of a session are always next to each other.
    sample = "coalesce(p.data_source, '') = 'sample'"
    ranges = store.query(
        f"SELECT p.origin, p.predictor, p.symbol, p.interval, count(*) AS n,"
        f" sum({sample}) AS sample, count(DISTINCT coalesce(p.data_source, '')) AS sources"
        f" FROM predictions p{' WHERE ' + ' AND '.join(where) if where else ''}"
        " GROUP BY p.origin, p.predictor, p.symbol, p.interval", tuple(params))
    left_out = 0 if include_sample else sum(r["sample"] for r in ranges)
    ranges = [r for r in ranges if include_sample or r["n"] > r["sample"]]
    counts: dict[str, int] = {}
    for r in ranges:
        counts[r["origin"]] = counts.get(r["origin"], 0) + r["n"] - (
            0 if include_sample else r["sample"])

    # The horizons scored (1 and 5), each found by one step down outcomes_by_horizon.
    horizons: list[int] = []
    h = store.query("SELECT min(horizon) AS h FROM outcomes")[0]["h"]
    while h is not None:
        horizons.append(h)
        h = store.query("SELECT min(horizon) AS h FROM outcomes WHERE horizon > ?",
                        (h,))[0]["h"]
    # One row per prediction, with its outcome at each horizon beside it; every prediction,
    # scored or not: a later run of a session without its outcome yet still stands for that
    # session. Sessions are ISO dates, ten characters. Text is read as BLOB: bytes, which
    # numpy copies as they are, where text would be decoded to str and encoded back, a
    # million times over.
    outcome = "".join(f", CAST(coalesce(o{h}.end_session, '') AS BLOB),"
                      f" coalesce(o{h}.correct, -1), o{h}.forward_return" for h in horizons)
    joins = "".join(f" LEFT JOIN outcomes o{h} INDEXED BY outcomes_scored ON"
                    f" o{h}.prediction_id = p.id AND o{h}.horizon = {h}" for h in horizons)
    sql = ("SELECT CAST(p.session AS BLOB), CAST(p.action AS BLOB), p.probability_1,"
           f" p.probability_5, coalesce(p.strength, p.confidence){outcome}"
           f" FROM predictions p INDEXED BY predictions_scored{joins}"
           " WHERE p.origin = ? AND p.predictor = ? AND p.symbol = ? AND p.interval = ?{}"
           f"{'' if include_sample else ' AND NOT ' + sample}"
           " ORDER BY p.session, coalesce(p.data_source, ''), p.created_at DESC, p.id DESC")
    one_source = " AND coalesce(p.data_source, '') = ?"
    dtype = np.dtype([("session", "S10"), ("action", "S4"), ("probability_1", "f8"),
                      ("probability_5", "f8"), ("strength", "f8"),
                      *((f"{col}_{h}", kind) for h in horizons for col, kind in
                        (("end_session", "S10"), ("correct", "i1"),
                         ("forward_return", "f8")))])
    symbols = sorted({r["symbol"] for r in ranges})
    code = {s: i for i, s in enumerate(symbols)}
    predictors = sorted({r["predictor"] for r in ranges})
    intervals = [i for i in PREDICTOR_INTERVALS if any(r["interval"] == i for r in ranges)]
    # Filled in place, a range at a time: no second copy of a million rows to join them.
    total = sum(counts.values())
    rows = np.empty(total, dtype=dtype)
    symbol_of = np.empty(total, dtype=np.int32)
    predictor_of = np.empty(total, dtype=np.int32)
    interval_of = np.empty(total, dtype=np.int32)
    latest = np.ones(total, dtype=bool)
    at = 0
    reads, sizes = [], []  # sizes: about how many rows each read gives, to halve them
    for r in ranges:
        key = (r["origin"], r["predictor"], r["symbol"], r["interval"])
        if r["sources"] == 1:
            reads.append((r["symbol"], r["predictor"], sql.format(""), key))
            sizes.append(r["n"])
            continue
        for (source,) in store.tuples(
                "SELECT DISTINCT coalesce(data_source, '') FROM predictions"
                " WHERE origin = ? AND predictor = ? AND symbol = ? AND interval = ?", key):
            if include_sample or source != "sample":
                reads.append((r["symbol"], r["predictor"], sql.format(one_source),
                              (*key, source)))
                sizes.append(r["n"] // r["sources"])
    for (symbol, predictor, query, key), block in _read_halves(store, reads, sizes, dtype,
                                                               total):
        end = at + len(block)
        if end > len(rows):  # written since they were counted
            grow = end - len(rows)
            rows = np.concatenate([rows, np.empty(grow, dtype=dtype)])
            symbol_of, predictor_of, interval_of = (
                np.concatenate([a, np.empty(grow, dtype=np.int32)])
                for a in (symbol_of, predictor_of, interval_of))
            latest = np.concatenate([latest, np.ones(grow, dtype=bool)])
        rows[at:end] = block
        symbol_of[at:end] = code[symbol]
        predictor_of[at:end] = predictors.index(predictor)
        interval_of[at:end] = intervals.index(key[3])
        # The latest run of a session is the first of it in its range.
        latest[at + 1:end] = block["session"][1:] != block["session"][:-1]
        at = end
    rows, symbol_of, predictor_of, interval_of, latest = (
        a[:at] for a in (rows, symbol_of, predictor_of, interval_of, latest))
    session = _day_numbers(rows["session"])
    correct = {h: rows[f"correct_{h}"] for h in horizons}
    # The distinct sessions of every row, sorted once: each scorecard's own (those of its
    # rows, and which of them each row has) is then a count, not another sort of a million.
    days, day_of = np.unique(session, return_inverse=True)
    day_of = day_of.astype(np.int32)  # half the memory of numpy's, for as long as the cards

    def sessions_of(chosen):
        """``np.unique(session[chosen], return_inverse=True)``, from the sort of them all."""
        codes = day_of[chosen]
        present = np.bincount(codes, minlength=len(days)) > 0
        return days[present], (np.cumsum(present, dtype=np.int32) - 1)[codes]

    def scored(h: int, chosen) -> dict[str, Any]:
        return {"symbol": symbol_of[chosen], "session": session[chosen],
                "sessions": sessions_of(chosen),
                "end_session": _day_numbers(rows[f"end_session_{h}"][chosen]),
                "action": rows["action"][chosen], "correct": correct[h][chosen] == 1,
                "forward_return": rows[f"forward_return_{h}"][chosen],
                "probability": (rows[f"probability_{h}"][chosen] if h in HORIZONS
                                else np.full(int(chosen.sum()), np.nan)),
                "strength": rows["strength"][chosen]}

    def cards(mask) -> JSON:
        out = {}
        for h in horizons:
            chosen = mask & latest & (correct[h] >= 0)
            if chosen.any():
                out[str(h)] = scorecard.horizon_card(
                    scored(h, chosen), HOLD_BAND.get(h, HOLD_BAND[5]),
                    min_outcomes=MIN_OUTCOMES, symbols=symbols)
        return out

    def per_predictor(mask, whole: JSON) -> JSON:
        # the predictors present, in order: a count of each, not a sort of every row
        made_by = np.flatnonzero(np.bincount(predictor_of[mask], minlength=len(predictors)))
        if len(made_by) == 1:  # one predictor's scorecard is the whole one: not twice the work
            return {predictors[made_by[0]]: whole} if whole else {}
        return {predictors[i]: c for i in made_by if (c := cards(mask & (predictor_of == i)))}

    everything = np.ones(len(rows), dtype=bool)
    horizons_card = cards(everything)
    by_predictor = per_predictor(everything, horizons_card)
    by_interval: JSON = {}
    for k, name in enumerate(intervals):
        mask = interval_of == k
        if len(intervals) == 1:
            card, makers = horizons_card, by_predictor
        else:
            card = cards(mask)
            makers = per_predictor(mask, card)
        made = {o: sum(r["n"] - (0 if include_sample else r["sample"]) for r in ranges
                       if r["interval"] == name and r["origin"] == o) for o in counts}
        by_interval[name] = {
            "predictions": {o: n for o, n in made.items() if n},
            "horizons": card, "by_predictor": makers,
            "headlines": scorecard.headlines({"by_predictor": makers})}
    return {
        "predictions": counts,
        "outcomes": int(sum((latest & (correct[h] >= 0)).sum() for h in horizons)),
        # scored predictions folded into a later one of the same symbol and session
        "repeats_folded": {str(h): int((~latest & (correct[h] >= 0)).sum())
                           if h in horizons else 0 for h in HORIZONS},
        "sample_left_out": left_out,
        "hold_band": {str(k): v for k, v in HOLD_BAND.items()},
        "min_n": scorecard.MIN_N,
        "horizons": horizons_card,
        "by_predictor": by_predictor,
        # in words, one per predictor: has acting on its calls shown an edge after costs?
        "headlines": scorecard.headlines({"by_predictor": by_predictor}),
        # each interval's calls apart (a 1h stream beside the daily one: issue 29)
        "by_interval": by_interval,
    }


def _read_halves(store: Store, reads: list, sizes: list[int], dtype, total: int):
    """``(read, block)`` for each of ``reads`` in order, ``block`` its rows as a numpy array.

    Handing a million joined rows from SQLite to Python is most of ``trading report``'s time,
    and one process does it on one core. So a store of :data:`TWO_PROCESSES` rows or more is
    read in two halves at once: the second half by a forked child with its own read-only
    connection (an inherited one is never used nor closed in the child: its SQLite state
    belongs to this process), the first here meanwhile. The child keeps its blocks until it
    has them all, then sends them down a pipe, one at a time, in order; the first half is
    yielded as it is read, so this process holds no more than it did reading alone, and the
    child about half the rows (tens of MB at a million). Threads would not help: each row
    takes the GIL.

    The child's half is read here instead whenever the child cannot give it: no ``fork``
    start method (Windows; elsewhere it is asked for by name, whatever the default), a store
    that is not a file, a child that fails, dies, or is silent well past the time this half
    took (a lock held by another thread at the fork): what was received is kept, the rest is
    read here, so the report is the same either way."""
    import numpy as np

    def here(part):
        for read in part:
            yield read, np.fromiter(store.tuples(read[2], read[3]), dtype=dtype)

    if total < TWO_PROCESSES or len(reads) < 2 or not os.path.isfile(store.path):
        yield from here(reads)
        return
    import multiprocessing
    import time
    from multiprocessing.connection import wait

    if "fork" not in multiprocessing.get_all_start_methods():
        yield from here(reads)
        return
    # The split: the first read past half of the rows starts the child's half.
    half, acc, whole = len(reads) - 1, 0, sum(sizes)
    for i, n in enumerate(sizes):
        acc += n
        if acc * 2 >= whole:
            half = max(1, min(i + 1, len(reads) - 1))
            break
    mine, theirs = reads[:half], reads[half:]
    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)
    for stream in (sys.stdout, sys.stderr):  # nothing buffered is written twice
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    child = ctx.Process(target=_read_child, args=(store.path, theirs, dtype, send),
                        daemon=True, name="trading-report-reader")
    got = 0
    try:
        started = time.monotonic()
        try:
            child.start()
        except OSError as exc:
            logger.warning("report: reading in one process (no child: %s)", exc)
            child = None
        send.close()  # the child's end: its exit is then the pipe's end here
        yield from here(mine)
        if child is not None:
            # Well past the time this half took, a silent child is stuck: read its half here.
            patience = 30.0 + 4 * (time.monotonic() - started)
            try:
                if not wait([receive], patience):
                    raise TimeoutError(f"no answer in {patience:.0f} s")
                status = receive.recv_bytes()
                if status != b"ok":
                    raise RuntimeError(status.decode(errors="replace"))
                for read in theirs:
                    if not wait([receive], patience):
                        raise TimeoutError(f"no answer in {patience:.0f} s")
                    block = np.frombuffer(receive.recv_bytes(), dtype=dtype)
                    got += 1
                    yield read, block
            except (EOFError, OSError, RuntimeError, TimeoutError, ValueError) as exc:
                logger.warning("report: the reading child gave %d of %d ranges (%s); reading "
                               "the rest in this process", got, len(theirs), exc)
        yield from here(theirs[got:])
    finally:
        receive.close()
        if not send.closed:
            send.close()
        if child is not None and child.pid is not None:
            child.join(timeout=0 if got < len(theirs) else 5)
            if child.is_alive():
                child.terminate()
                child.join()
            child.close()


def _read_child(path: str, reads: list, dtype, send) -> None:
    """The child of :func:`_read_halves`: ``reads`` through its own read-only connection;
    once all are read, ``b"ok"`` then each block's bytes down ``send``, in order (or why it
    failed, and nothing more: the parent reads this half itself)."""
    import numpy as np

    try:
        own = Store(path, readonly=True)
        blocks = [np.fromiter(own.tuples(query, key), dtype=dtype)
                  for _, _, query, key in reads]
        own.conn.close()
    except Exception as exc:  # noqa: BLE001 - said to the parent, which reads it itself
        send.send_bytes(f"failed: {exc}".encode())
        return
    send.send_bytes(b"ok")
    for block in blocks:
        send.send_bytes(block.tobytes())
    send.close()


def _day_numbers(dates):
    """ISO dates (numpy ``S10``) as integers that sort as the dates do, and compare many
    times faster: the walk-forward climatology looks up a million of them. The year, month
    and day are read as the big-endian numbers their digits' bytes make, not parsed."""
    import numpy as np

    parts = np.ascontiguousarray(dates).view(np.dtype(
        [("year", ">u4"), ("", "S1"), ("month", ">u2"), ("", "S1"), ("day", ">u2")]))
    return ((parts["year"].astype(np.int64) << 32) | (parts["month"].astype(np.int64) << 16)
            | parts["day"])
