"""The historical replay behind ``trading replay``: predictions as they would have been made.

:func:`replay` rebuilds history: for each session in a ``csv:DIR`` series it summarises the
bars up to that session (:func:`trading.market.summary.summarize`, the same code market-data
serves, with the configured index ``context.index`` for the market context), asks each given
predictor (:mod:`trading.signals.predictors`; the rules by default) for a decision, exactly
as the prediction service does (no sentiment: there are no historical headlines), stores
the prediction in the ledger as made at that session's close (``origin = 'replay'``), and then
runs the outcome scoring (:func:`trading.signals.outcomes.evaluate`) over the same bars.
Replayed predictions emit no events: they are history, not news.

Then it calibrates them as they would have been calibrated live
(:func:`trading.signals.calibration.walk_forward`: each session's predictions get a fit made
only from outcomes settled by that session), and stores a calibration fitted on every scored
outcome (sample data left out) for live predictions to use.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterable, Sequence
from datetime import date, datetime, time, timezone
from typing import Any

from trading import clock
from trading.errors import InvalidParams, NotFound
from trading.market.periods import LONGEST, LOOKBACK_SESSIONS, WARMUP_SESSIONS
from trading.runtime.store import Store
from trading.signals import calibration, ledger, outcomes

logger = logging.getLogger(__name__)

JSON = dict[str, Any]


def close_time(session: str) -> str:
    """16:30 Sydney on ``session`` (after the closing auction) as an ISO UTC timestamp."""
    t = datetime.combine(date.fromisoformat(session), time(16, 30), clock.sydney())
    return t.astimezone(timezone.utc).isoformat(timespec="microseconds")


def replay(store: Store, cfg: Any, get_bars: outcomes.GetBars, symbols: Iterable[str], *,
           source: str, start: str | None = None, end: str | None = None, every: int = 1,
           today: date | None = None, predictors: Sequence[Any] | None = None) -> JSON:
    """Predict each ``every``-th session of each symbol's history as if at its close, store the
    predictions (origin 'replay', replacing the earlier replay of the same source, symbols and
    sessions, and nothing else), then score
    their outcomes. Returns ``{run_id, predictions, by_action, outcomes: evaluate(...)}``.

    ``predictors`` (loaded :class:`trading.signals.predictors.Predictor`; default: the rules)
    each decide every session, side by side: each one's predictions are a run of their own
    (``run_id`` ``replay:SOURCE`` for the rules, ``replay:SOURCE:module:Name`` for another),
    so replaying one predictor never replaces another's. With several, ``runs`` has each
    one's ``{run_id, predictor, predictions, by_action, errors}``."""
    from trading.market.summary import summarize  # numpy: only the replay pays for it
    from trading.signals import predictors as _predictors

    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise InvalidParams("every must be a positive integer")
    runs = list(predictors) if predictors else [
        _predictors.load(_predictors.DEFAULT, None, 60.0)]
    index = cfg["context.index"]
    try:
        index_bars = list(get_bars(index, LONGEST, source).get("bars") or [])
    except NotFound as exc:
        # No index file in the folder: the context is the flagged NEUTRAL fallback, as
        # backtest and train have it, rather than no replay at all.
        logger.warning("replay without %s (%s): market context NEUTRAL (fallback)", index, exc)
        index_bars = []
    index_dates = [str(b["date"])[:10] for b in index_bars]

    jobs: list[_predictors.Job] = []
    for symbol in symbols:
        bars = list(get_bars(symbol, LONGEST, source).get("bars") or [])
        for i in range(WARMUP_SESSIONS, len(bars), every):
            session = str(bars[i]["date"])[:10]
            if (start and session < start) or (end and session > end):
                continue
            j = bisect.bisect_right(index_dates, session)
            market = summarize(symbol, bars[max(0, i + 1 - LOOKBACK_SESSIONS):i + 1],
                               index_bars[max(0, j - LOOKBACK_SESSIONS):j], cfg)
            market.update(source=source, stale=False, age_s=0)
            jobs.append(_predictors.Job(symbol, market, key=f"{symbol}@{session}"))
    budget = cfg.get("predictor_timeout") or 10.0
    results = []
    for predictor in runs:
        run_id = f"replay:{source}" + ("" if predictor.name == _predictors.DEFAULT
                                       else f":{predictor.name}")
        made, failed = _predictors.run_many(predictor, jobs, cfg, budget)
        kept = [(made[job.key], job) for job in jobs if job.key in made]
        for p, job in kept:
            p["created_at"] = close_time(job.key.rpartition("@")[2])
        # It replaces exactly what it recomputes (this predictor's replayed predictions from
        # the same source of these symbols on these sessions; every other symbol, session
        # and predictor stays), and the replacing and the storing are one transaction: a
        # failed or interrupted replay leaves the earlier one whole. ledger.record() keys
        # inputs by symbol and a replay has many predictions per symbol, so each row is
        # inserted with its own inputs.
        recomputed = [(run_id, job.symbol, ledger.base_session(job.market, p["created_at"]))
                      for p, job in kept]
        with store.transaction() as db:
            db.executemany("DELETE FROM predictions WHERE run_id = ? AND symbol = ? "
                           "AND session = ?", recomputed)
            for p, job in kept:
                ledger.insert(db, p, {"market": job.market, "sentiment": None, "model": None},
                              source=source, origin="replay", run_id=run_id)
        by_action: dict[str, int] = {}
        for p, _ in kept:
            by_action[p["action"]] = by_action.get(p["action"], 0) + 1
        results.append({"run_id": run_id, "predictor": predictor.provenance,
                        "predictions": len(kept), "by_action": by_action,
                        "errors": _predictors.summarize_errors(failed)})
    # Only this replay's predictions, on the bars it was replayed from.
    outcome = outcomes.evaluate(store, get_bars, index=index, today=today, source=source)
    # The rules' runs are calibrated as they would have been live, walk-forward, and the
    # store's calibration for live predictions refitted (on the rules' predictions only:
    # calibration maps the rules' score; a plugged predictor's confidence is its own).
    for r in results:
        if r["run_id"] == f"replay:{source}":
            r["calibration"] = {"walk_forward": calibration.walk_forward(store, r["run_id"])}
            live = calibration.fit_store(store)
            r["calibration"]["stored"] = {"id": live.id, "fitted_on": live.fitted_on,
                                          "through": live.through}
    first = results[0]
    return {**first, "outcomes": outcome, **({"runs": results} if len(results) > 1 else {})}
