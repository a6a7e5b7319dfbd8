"""Model features: the numbers of a ``get_market_data`` result, per symbol and session.

The features *are* the numeric fields of :func:`trading.market.summary.summarize` (RSI, MACD
histogram, price against the 20-day average, the technical score, the volume measures and the
index trend), so one function, :func:`vector`, serves both sides:

- training and backtests build ``summarize(symbol, bars[:d+1], index_bars[<=d], cfg)`` for
  every session ``d`` (:func:`history`): each row sees only the bars up to its own date, which
  is what makes the no-lookahead property hold by construction;
- a live prediction passes the market-data service's answer to :func:`vector` and needs no
  bars at all.

The MACD histogram is in price units (a dollar on CBA is not a dollar on COL), so it is taken
as a percentage of the current price. This module imports no pandas or numpy at the top: the
prediction path imports it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from trading.market.periods import LOOKBACK_SESSIONS

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Feature:
    name: str
    path: tuple[str, str]
    per_price: bool = False  # divide by technical.current_price (x100): price-free units


FEATURES: tuple[Feature, ...] = (
    Feature("rsi", ("technical", "rsi")),
    Feature("macd_histogram_pct", ("technical", "macd_histogram"), per_price=True),
    Feature("price_vs_sma20", ("technical", "price_vs_sma20")),
    Feature("tech_score", ("technical", "tech_score")),
    Feature("volume_trend", ("volume", "volume_trend")),
    Feature("price_volume_correlation", ("volume", "price_volume_correlation")),
    Feature("volume_quality_score", ("volume", "volume_quality_score")),
    Feature("index_trend_pct", ("market_context", "trend_pct")),
)
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
_BY_NAME = {f.name: f for f in FEATURES}


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    value = float(value)
    return value if math.isfinite(value) else math.nan


def vector(market: dict, names: Sequence[str] = FEATURE_NAMES) -> list[float]:
    """The named features of one market-data result, in order; NaN where a field is missing."""
    out = []
    for name in names:
        f = _BY_NAME[name]
        section = market.get(f.path[0]) or {}
        value = _number(section.get(f.path[1]))
        if f.per_price:
            price = _number((market.get("technical") or {}).get("current_price"))
            value = value / price * 100 if price and not math.isnan(price) else math.nan
        out.append(value)
    return out


# -- history: one summary per session, each from the bars up to that session ------------------
# (of at most LOOKBACK_SESSIONS bars: about the year the market-data service summarises)


@dataclass
class History:
    """One symbol's sessions with the market-data summary as it stood at each one.

    ``markets[k]`` was computed from ``bars[:k+1]`` (at most
    :data:`trading.market.periods.LOOKBACK_SESSIONS` of them) and the index bars dated on or
    before ``dates[k]``; nothing after ``dates[k]`` went in.
    """

    symbol: str
    dates: list[str]
    close: Any  # numpy array, one close per date
    markets: list[dict]
    open: Any = None  # numpy array, one open per date (None: not known; closes stand in)


def history(symbol: str, bars, index_bars, cfg, *, lookback: int = LOOKBACK_SESSIONS,
            start: str | None = None, end: str | None = None) -> History:
    """Replay ``summarize`` over every session of ``bars`` (or those in ``[start, end]``).

    ``bars`` and ``index_bars`` are :class:`trading.market.summary.Bars` (or ``get_bars`` rows).
    """
    import bisect

    from trading.market.summary import as_bars, summarize

    b = as_bars(bars)
    idx = as_bars(index_bars)
    dates, markets, keep = [], [], []
    for k, d in enumerate(b.dates):
        if (start and d < start) or (end and d > end):
            continue
        window = b[max(0, k + 1 - lookback):k + 1]
        i = bisect.bisect_right(idx.dates, d)  # index bars dated on or before d
        markets.append(summarize(symbol, window, idx[max(0, i - lookback):i], cfg))
        dates.append(d)
        keep.append(k)
    return History(symbol, dates, b.close[keep], markets, b.open[keep])


def intraday_history(symbol: str, bars, index_windows, interval: str, cfg, *,
                     start: str | None = None, end: str | None = None) -> History:
    """A backtest's history from intraday bars (issue 29): one entry per session, its close the
    session's last complete bar's (the closing auction's), its open the first bar's, and its
    summary the predictor's inputs at that bar, computed from the bars up to it (the old
    service's five-session window: :func:`trading.market.intraday_summary.window_summaries`;
    ``index_windows`` an :class:`~trading.market.intraday_summary.IndexWindows`). Sessions
    whose window is not yet whole (after the start or a gap) are left out, as a daily
    history's warm-up is. The calls made during a session are the replay's; a backtest acts
    on the one a session ends with, as it does on a daily call."""
    import numpy as np

    from trading.market.intraday_summary import (as_intraday_bars, whole_windows,
                                                 window_summaries)

    b = as_intraday_bars(bars)
    days = [d[:10] for d in b.dates]
    last = {day: i for i, day in enumerate(days)}  # each session's last complete bar
    first: dict[str, int] = {}
    for i, day in enumerate(days):
        first.setdefault(day, i)
    ready = whole_windows(b.dates, interval)

    def keep(i: int, stamp: str) -> bool:
        day = stamp[:10]
        return ready[i] and last[day] == i and not (start and day < start) \
            and not (end and day > end)

    dates, close, open_, markets = [], [], [], []
    for i, market in window_summaries(symbol, b, None, interval, cfg, keep=keep,
                                      context_at=index_windows):
        dates.append(days[i])
        close.append(float(b.close[i]))
        open_.append(float(b.open[first[days[i]]]))
        markets.append(market)
    return History(symbol, dates, np.array(close, dtype=float), markets,
                   np.array(open_, dtype=float))


@dataclass
class Dataset:
    """Labelled rows over several symbols: ``x[i]`` from ``markets[i]``, ``y[i]`` = 1 when the
    close ``horizon`` sessions after ``dates[i]`` is higher (a flat close counts as 0)."""

    x: Any            # (n, len(FEATURE_NAMES)) float array, NaN where a field is missing
    y: Any            # (n,) int array
    dates: list[str]
    symbols: list[str]
    markets: list[dict] | None  # one summary per row; None once compacted (rules)
    horizon: int
    label_dates: list[str]  # the session whose close decided each label
    # The rules' probability per row (trading.learning.models.compact), kept instead of
    # ``markets`` (then None) when a job over many symbols cannot hold a summary per row.
    rules: Any = None


def dataset(histories: dict[str, History], horizon: int) -> Dataset:
    """Rows for every session that has a close ``horizon`` sessions later."""
    import numpy as np

    rows, ys, dates, symbols, markets, label_dates = [], [], [], [], [], []
    for symbol in sorted(histories):
        h = histories[symbol]
        for k in range(len(h.dates) - horizon):
            rows.append(vector(h.markets[k]))
            ys.append(int(h.close[k + horizon] > h.close[k]))
            dates.append(h.dates[k])
            symbols.append(symbol)
            markets.append(h.markets[k])
            label_dates.append(h.dates[k + horizon])
    x = np.array(rows, dtype=float).reshape(len(rows), len(FEATURE_NAMES))
    return Dataset(x, np.array(ys, dtype=int), dates, symbols, markets, horizon, label_dates)


def concat(parts: list[Dataset]) -> Dataset:
    """One dataset of ``parts`` in order (each from its own symbols, all of one horizon):
    a job builds a symbol's rows, drops its summaries, and joins the rows at the end."""
    import numpy as np

    if not parts:
        return dataset({}, 1)
    horizon = parts[0].horizon
    if any(p.horizon != horizon for p in parts):
        raise ValueError("datasets of different horizons cannot be joined")

    def joined(name: str) -> list:
        return [v for p in parts for v in getattr(p, name)]

    x = np.concatenate([p.x for p in parts])
    markets = None if any(p.markets is None for p in parts) else joined("markets")
    rules = None if any(p.rules is None for p in parts) else \
        np.concatenate([np.asarray(p.rules, dtype=float) for p in parts])
    return Dataset(x, np.concatenate([p.y for p in parts]), joined("dates"), joined("symbols"),
                   markets, horizon, joined("label_dates"), rules)

