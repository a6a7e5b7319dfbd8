"""Backtests: replay history day by day through the real prediction rules.

For every symbol and every session ``d`` in the window, :func:`replay` takes the market-data
summary built from the bars up to ``d`` only (:func:`trading.learning.features.history`), asks
:func:`trading.signals.rules.decide` for an action exactly as the prediction service does (no
sentiment: the history has none; the model only when one is given, and the caller gives one
only if it saw no price from the window), and records the next session's return.

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

    def add(self, symbol: str, date: str, action: str, confidence: float, forward: float) -> None:
        self.symbol.append(symbol)
        self.date.append(date)
        self.action.append(action)
        self.confidence.append(confidence)
        self.forward.append(forward)

    def __len__(self) -> int:
        return len(self.date)


def replay(histories, cfg, *, start: str | None = None, end: str | None = None,
           model=None, on_symbol: Callable[[int, int, str], None] | None = None) -> Signals:
    """Signals for every session in ``[start, end]`` that has a next session to score it.

    ``histories`` maps a symbol to its :class:`trading.learning.features.History` (one summary per
    session, each from the bars up to that session). ``model`` (a
    :class:`trading.learning.models.LinearModel`) adds its probability as the rules' model component.
    """
    from trading.signals.rules import decide

    out = Signals()
    version = model.version if model is not None else None
    for i, (symbol, h) in enumerate(sorted(histories.items())):
        for k in range(len(h.dates) - 1):
            d = h.dates[k]
            if (start and d < start) or (end and d > end) or h.markets[k] is None:
                continue
            market = h.markets[k]
            p = model.probability(market) if model is not None else None
            decision = decide(market, None, p, cfg, model_version=version)
            out.add(symbol, d, decision["action"], float(decision.get("confidence") or 0.0),
                    float(h.close[k + 1] / h.close[k] - 1.0))
        if on_symbol is not None:
            on_symbol(i + 1, len(histories), symbol)
    return out


def max_drawdown(equity: np.ndarray) -> float:
    """The largest fall from a running peak, as a fraction (0.12 = 12%); NaNs are skipped."""
    e = np.asarray(equity, dtype=float)
    e = e[~np.isnan(e)]
    if not len(e):
        return float("nan")
    peak = np.maximum.accumulate(e)
    return float(np.max(1.0 - e / peak))


def evaluate(signals: Signals, index_close: dict[str, float] | None, *,
             cost_bps: float = DEFAULT_COST_BPS, next_session: dict[str, str] | None = None
             ) -> dict[str, Any]:
    """The backtest report: per-action statistics, equity curves and drawdowns.

    ``index_close`` maps a session date to the index close (may be partial or empty);
    ``next_session`` maps a session to the one after it (the day each return is realised).
    """
    if not len(signals):
        raise ValueError("no sessions to evaluate in the window")
    action = np.array(signals.action)
    fwd = np.array(signals.forward, dtype=float)
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

    # Per symbol, in date order: the position taken at d's close earns d -> d+1; a change of
    # position (entry or exit) pays the cost once.
    cost = cost_bps / 1e4
    strat = np.zeros(len(fwd))
    trades = 0
    for s in np.unique(symbols):
        idx = np.flatnonzero(symbols == s)
        idx = idx[np.argsort(dates[idx], kind="mergesort")]
        pos = buy[idx].astype(float)
        changes = np.abs(np.diff(np.concatenate([[0.0], pos])))
        trades += int(changes.sum())
        strat[idx] = pos * fwd[idx] - changes * cost
        # the position still open at the end is not charged an exit: it is marked to market

    sessions = np.unique(dates)
    day_strat = np.array([strat[dates == d].mean() for d in sessions])
    day_hold = np.array([fwd[dates == d].mean() for d in sessions])
    day_index = np.full(len(sessions), np.nan)
    if index_close and next_session:
        for j, d in enumerate(sessions):
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
