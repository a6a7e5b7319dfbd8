"""Backtests: replay history day by day through the real prediction rules.

For every symbol and every session ``d`` in the window, :func:`replay` takes the market-data
summary built from the bars up to ``d`` only (:func:`trading.learning.features.history`), asks
the predictor (:mod:`trading.signals.predictors`; the built-in rules unless another is given)
for an action exactly as the prediction service does (no sentiment: the history has none; the
model only when one is given, and the caller gives one only if it saw no price from the
window), and records the next session's return. A prediction the predictor fails to make is
left out and counted (``Signals.errors``), never guessed.

Two returns per signal, because a call and a trade are not the same thing. Whether the call
was **right** is judged close to close (``forward``: ``d`` to ``d+1``, as every outcome is).
What acting on it **earns** starts later: the call needs ``d``'s settled close, which comes
after the market has shut, so the position is taken at the next open and held until the open
after (``traded``: ``open[d+1]`` to ``open[d+2]``; the last one is marked at ``close[d+1]``).
Entering at ``d``'s own close, as before, credited the strategy with a price nobody could
trade at.

:func:`compare` puts several predictors' reports beside the two baselines every one of them
must beat on the same sessions: always BUY (buy and hold) and always HOLD (cash).

:func:`evaluate` turns those signals into the report: hit rate, mean forward return per
action, and equity curves for *long on BUY, flat otherwise* (paying ``cost_bps`` on every
entry and every exit) against buy-and-hold of the same symbols and against the index.
Portfolios are equal-weight across the symbols, rebalanced daily (a session's return is the
mean of the symbols' returns). The index curve covers only the sessions for which the index
has a close on both ends; other sessions are flagged as missing, not filled.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

ACTIONS = ("BUY", "HOLD", "SELL")
DEFAULT_COST_BPS = 10.0  # 0.10% per side: a typical online-broker fee plus half the spread


@dataclass
class Signals:
    """One row per (symbol, session): the action and the next session's return."""

    symbol: list[str] = field(default_factory=list)
    date: list[str] = field(default_factory=list)
    action: list[str] = field(default_factory=list)
    confidence: list[float] = field(default_factory=list)
    forward: list[float] = field(default_factory=list)  # close[d+1] / close[d] - 1
    traded: list[float] = field(default_factory=list)   # open[d+2] / open[d+1] - 1
    errors: dict[str, Any] = field(default_factory=dict)  # "SYMBOL@DATE": the error entry

    def add(self, symbol: str, date: str, action: str, confidence: float, forward: float,
            traded: float | None = None) -> None:
        self.symbol.append(symbol)
        self.date.append(date)
        self.action.append(action)
        self.confidence.append(confidence)
        self.forward.append(forward)
        self.traded.append(forward if traded is None else traded)

    def __len__(self) -> int:
        return len(self.date)

    def keep(self, keys: set[tuple[str, str]]) -> int:
        """Keep only the rows whose ``(symbol, date)`` is in ``keys``; returns how many went."""
        rows = [i for i, k in enumerate(zip(self.symbol, self.date)) if k in keys]
        gone = len(self.date) - len(rows)
        for name in ("symbol", "date", "action", "confidence", "forward", "traded"):
            column = getattr(self, name)
            setattr(self, name, [column[i] for i in rows])
        return gone

    def extend(self, other: Signals) -> None:
        """Append ``other``'s rows and errors: a job replays one symbol at a time and keeps
        only its signals, not its summaries."""
        for name in ("symbol", "date", "action", "confidence", "forward", "traded"):
            getattr(self, name).extend(getattr(other, name))
        self.errors.update(other.errors)


def replay(histories, cfg, *, start: str | None = None, end: str | None = None,
           model=None, on_symbol: Callable[[int, int, str], None] | None = None,
           predictor=None) -> Signals:
    """Signals for every session in ``[start, end]`` that has a next session to score it.

    ``histories`` maps a symbol to its :class:`trading.learning.features.History` (one summary per
    session, each from the bars up to that session). ``model`` (a
    :class:`trading.learning.models.LinearModel`) adds its probability as the model input.
    ``predictor``: a loaded :class:`trading.signals.predictors.Predictor` (default: the rules).
    """
    from trading.signals import predictors

    if predictor is None:
        predictor = predictors.load(predictors.DEFAULT, None, 60.0)
    try:
        budget = float(cfg["predictor_timeout"])
    except (KeyError, TypeError):
        budget = 10.0
    out = Signals()
    version = model.version if model is not None else None
    for i, (symbol, h) in enumerate(sorted(histories.items())):
        jobs, forward = [], {}
        for k in range(len(h.dates) - 1):
            d = h.dates[k]
            if (start and d < start) or (end and d > end) or h.markets[k] is None:
                continue
            market = h.markets[k]
            given = None if model is None else {"version": version,
                                                "probability": model.probability(market)}
            job = predictors.Job(symbol, market, None, given, key=f"{symbol}@{d}")
            jobs.append(job)
            forward[job.key] = (d, float(h.close[k + 1] / h.close[k] - 1.0), _traded(h, k))
        made, failed = predictors.run_many(predictor, jobs, cfg, budget)
        out.errors.update(failed)
        for job in jobs:
            p = made.get(job.key)
            if p is not None:
                d, ret, traded = forward[job.key]
                out.add(symbol, d, p["action"], float(p.get("confidence") or 0.0), ret, traded)
        if on_symbol is not None:
            on_symbol(i + 1, len(histories), symbol)
    return out


def _at_open(open_: float | None, close_before: float | None) -> float | None:
    """The price a position is taken or left at: the session's open; one that is missing or
    not positive (Yahoo leaves some at 0; NaN > 0 is false too) by the close before."""
    return open_ if open_ is not None and open_ > 0 else close_before


def _traded(h, k: int) -> float:
    """What a position decided after session ``k``'s close earns: bought at the next open,
    sold at the open after (marked at ``k+1``'s close when there is none)."""
    def entry(j: int) -> float:
        return _at_open(float(h.open[j]) if h.open is not None else None, float(h.close[j - 1]))

    buy = entry(k + 1)
    sell = entry(k + 2) if k + 2 < len(h.dates) else float(h.close[k + 1])
    return sell / buy - 1.0


def same_sessions(signals: dict[str, Signals]) -> int:
    """Cut every contestant's signals to the symbol-sessions all of them scored, so a
    comparison is over the same rows; returns how many symbol-sessions were dropped for all
    (one a predictor failed on, say)."""
    keys = [set(zip(s.symbol, s.date)) for s in signals.values()]
    if not keys:
        return 0
    common = set.intersection(*keys)
    for s in signals.values():
        s.keep(common)
    return len(set.union(*keys) - common)


def edge(signals: Signals) -> dict[str, Any]:
    """The scorecard's edge of these signals (:func:`trading.signals.scorecard.edge`): the
    mean return per BUY/SELL call after costs beyond the session's drift, close to close,
    with its block-bootstrap interval."""
    from trading.signals.scorecard import edge as card_edge

    days = np.array([int(d.replace("-", "")) for d in signals.date], dtype=np.int64)
    action = np.array(signals.action)
    return card_edge(days, action == "BUY", action == "SELL",
                     np.array(signals.forward, dtype=float))


def compare(reports: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per predictor's :func:`evaluate` report, then the baselines over the sessions of
    the first: hit rate of its BUY/SELL calls, the long-on-BUY curve, exposure, and (when the
    report has one) the edge after costs beyond the drift with its interval."""
    rows = []
    for name, r in reports.items():
        s = r["strategy"]
        rows.append({"name": name, "kind": "predictor", "signals": r["signals"],
                     "calls": r["calls"], "buy": r["per_action"]["BUY"]["count"],
                     "sell": r["per_action"]["SELL"]["count"], "hit_rate": r["hit_rate"],
                     "total_return_pct": s["total_return_pct"],
                     "max_drawdown_pct": s["max_drawdown_pct"], "sharpe": s["sharpe"],
                     "exposure": r["exposure"], "failed": r.get("failed", 0),
                     "edge": r.get("edge")})
    if reports:
        first = next(iter(reports.values()))
        up = sum((a["up_share"] or 0.0) * a["count"] for a in first["per_action"].values())
        n = sum(a["count"] for a in first["per_action"].values())
        bh = first["buy_and_hold"]
        rows.append({"name": "always BUY (buy and hold)", "kind": "baseline", "signals": n,
                     "calls": n, "buy": n, "sell": 0,
                     "hit_rate": round(up / n, 4) if n else None,
                     "total_return_pct": bh["total_return_pct"],
                     "max_drawdown_pct": bh["max_drawdown_pct"], "sharpe": bh["sharpe"],
                     "exposure": 1.0, "failed": 0})
        rows.append({"name": "always HOLD (cash)", "kind": "baseline", "signals": n,
                     "calls": 0, "buy": 0, "sell": 0, "hit_rate": None,
                     "total_return_pct": 0.0, "max_drawdown_pct": 0.0, "sharpe": None,
                     "exposure": 0.0, "failed": 0})
    return rows


def max_drawdown(equity: np.ndarray) -> float:
    """The largest fall from a running peak, as a fraction (0.12 = 12%); NaNs are skipped."""
    e = np.asarray(equity, dtype=float)
    e = e[~np.isnan(e)]
    if not len(e):
        return float("nan")
    peak = np.maximum.accumulate(e)
    return float(np.max(1.0 - e / peak))


def evaluate(signals: Signals, index_close: dict[str, float] | None, *,
             cost_bps: float = DEFAULT_COST_BPS, next_session: dict[str, str] | None = None,
             index_open: dict[str, float] | None = None) -> dict[str, Any]:
    """The backtest report: per-action statistics, equity curves and drawdowns.

    ``index_close`` maps a session date to the index close (may be partial or empty);
    ``next_session`` maps a session to the one after it (a curve's point for a signal is
    labelled with it: the session whose open the position is taken at). With ``index_open``
    the index is measured over the period the positions are held, from the next open to the
    open after (marked at the close where there is none after), so the three curves are like
    for like; without it, close to close from the signal's session, a session earlier.
    """
    if not len(signals):
        raise ValueError("no sessions to evaluate in the window")
    action = np.array(signals.action)
    fwd = np.array(signals.forward, dtype=float)
    traded = np.array(signals.traded if len(signals.traded) == len(fwd) else fwd, dtype=float)
    symbols = np.array(signals.symbol)
    dates = np.array(signals.date)

    per_action = {}
    for a in ACTIONS:
        m = action == a
        per_action[a] = {
            "count": int(m.sum()),
            "mean_forward_pct": _pct(fwd[m].mean()) if m.any() else None,
            "up_share": round(float((fwd[m] > 0).mean()), 4) if m.any() else None,
        }
    buy, sell = action == "BUY", action == "SELL"
    hits = int((fwd[buy] > 0).sum() + (fwd[sell] < 0).sum())
    called = int(buy.sum() + sell.sum())

    # Per symbol, in date order: the position decided at d's close is taken at d+1's open and
    # earns until d+2's open (``traded``); a change of position (entry or exit) pays the cost
    # once. Buy and hold is measured on the same returns, so the two are like for like.
    cost = cost_bps / 1e4
    strat = np.zeros(len(fwd))
    trades = 0
    for s in np.unique(symbols):
        idx = np.flatnonzero(symbols == s)
        idx = idx[np.argsort(dates[idx], kind="mergesort")]
        pos = buy[idx].astype(float)
        changes = np.abs(np.diff(np.concatenate([[0.0], pos])))
        trades += int(changes.sum())
        strat[idx] = pos * traded[idx] - changes * cost
        # the position still open at the end is not charged an exit: it is marked to market

    sessions = np.unique(dates)
    day_strat = np.array([strat[dates == d].mean() for d in sessions])
    day_hold = np.array([traded[dates == d].mean() for d in sessions])
    day_index = np.full(len(sessions), np.nan)
    if index_close and next_session:
        for j, d in enumerate(sessions):
            if index_open is not None:
                day_index[j] = _held(index_open, index_close, next_session, d)
                continue
            a, b = index_close.get(d), index_close.get(next_session.get(d, ""))
            if a and b:
                day_index[j] = b / a - 1.0
    index_days = int((~np.isnan(day_index)).sum())

    eq_strat = np.cumprod(1.0 + day_strat)
    eq_hold = np.cumprod(1.0 + day_hold)
    eq_index = _index_curve(day_index)
    curve_dates = [next_session.get(d, d) if next_session else d for d in sessions]
    covered = ~np.isnan(day_index)
    # Like for like: the three over only the sessions the index covers.
    same_days = {name: _pct(np.prod(1.0 + daily[covered]) - 1.0) if covered.any() else None
                 for name, daily in (("strategy", day_strat), ("buy_and_hold", day_hold),
                                     ("index", day_index))}
    return {
        "sessions": int(len(sessions)),
        "symbols": sorted(set(signals.symbol)),
        "start": str(sessions[0]), "end": str(sessions[-1]),
        "signals": int(len(fwd)),
        "hit_rate": round(hits / called, 4) if called else None,
        "hits": hits, "calls": called,
        "per_action": per_action,
        "cost_bps": cost_bps,
        "trades": trades,
        "exposure": round(float(buy.mean()), 4),
        "strategy": _summary(eq_strat, day_strat),
        "buy_and_hold": _summary(eq_hold, day_hold),
        "index": {**_summary(eq_index, day_index), "sessions_covered": index_days,
                  "sessions_missing": int(len(sessions) - index_days)},
        "total_return_pct_on_index_sessions": same_days,
        "curves": {"dates": curve_dates, "strategy": _round(eq_strat),
                   "buy_and_hold": _round(eq_hold), "index": _round(eq_index)},
    }


def _held(opens: dict[str, float], closes: dict[str, float], following: dict[str, str],
          d: str) -> float:
    """The index over the period a position decided at ``d``'s close is held: the next
    session's open to the open after (that session's close when it is the last); NaN where
    the index has no bar (prices as :func:`_at_open` says)."""
    n1 = following.get(d)
    if n1 is None:
        return math.nan
    buy = _at_open(opens.get(n1), closes.get(d))
    n2 = following.get(n1)
    sell = _at_open(opens.get(n2), closes.get(n1)) if n2 is not None else closes.get(n1)
    return sell / buy - 1.0 if buy and sell else math.nan


def _index_curve(day: np.ndarray) -> np.ndarray:
    """Equity of the index over the covered sessions; NaN where the index has no data."""
    eq = np.full(len(day), np.nan)
    level = 1.0
    for j, r in enumerate(day):
        if not np.isnan(r):
            level *= 1.0 + r
            eq[j] = level
    return eq


def _summary(equity: np.ndarray, daily: np.ndarray) -> dict[str, Any]:
    covered = equity[~np.isnan(equity)]
    d = daily[~np.isnan(daily)]
    return {
        "total_return_pct": _pct(covered[-1] - 1.0) if len(covered) else None,
        "max_drawdown_pct": _pct(max_drawdown(equity)) if len(covered) else None,
        "mean_daily_pct": _pct(d.mean()) if len(d) else None,
        "sharpe": round(float(d.mean() / d.std() * math.sqrt(252)), 2)
        if len(d) > 1 and d.std() > 0 else None,
    }


def _pct(x: float) -> float:
    return round(float(x) * 100, 4)


def _round(a: np.ndarray) -> list[float | None]:
    return [None if np.isnan(v) else round(float(v), 6) for v in a]
