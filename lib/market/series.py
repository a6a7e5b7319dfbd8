"""A whole series at once: its summary at every session.

The replay and the backtests summarise every session of a history. Doing it as market-data
does for one session (:func:`trading.market.summary.summarize` on the bars up to it) costs
the lookback (260 bars) per session; :func:`series_summaries` computes each indicator once per
gap-free stretch of the series and reads each session's values off it, and gives the same
summaries (see its docstring for the digits where they can differ).

Indicators are never computed across a gap (:mod:`trading.market.gaps`); the summary of the
live path (:mod:`trading.market.summary`) uses the bars since the last one for the same
reason.
"""

from __future__ import annotations

import math
from typing import Any

from trading.market.gaps import gaps
from trading.market.summary import (_technical, _volume, as_bars, context_for_trend,
                                    trend_from_closes)


# -- a whole series at once (the replay) -----------------------------------------------------
def series_summaries(symbol: str, bars, context_at, *, lookback: int, warmup: int,
                     keep=None):
    """Yield ``(i, summary)`` for each bar ``i`` at least ``warmup`` bars after the series'
    start or its last gap: what :func:`summarize` gives for the ``lookback`` bars up to ``i``,
    with the indicators computed once over each gap-free stretch instead of once per bar.

    ``context_at(date)``: the market context known at that session's close. ``keep(i, date)``
    (optional) picks the bars to summarise. Sliding-window measures (SMA, volatility, volume,
    correlation) come out bit for bit as :func:`summarize` gives them; the recursive ones
    (Wilder's RSI, the MACD's EMAs) start where the stretch starts rather than ``lookback``
    bars back, which changes them by about ``0.93 ** lookback`` of their size (1e-8 at 260):
    far below the digits a summary keeps."""
    from trading.market import indicators as ind

    b = as_bars(bars)
    starts = [0] + [i for i, _ in gaps(b.dates)] + [len(b)]
    for a, z in zip(starts, starts[1:]):
        if z - a <= warmup:
            continue  # a stretch too short to warm up: nothing in it is summarised
        close, volume, dates = b.close[a:z], b.volume[a:z], b.dates[a:z]
        rsi = ind.rsi(close, 14)
        hist = ind.macd(close)[2]
        sma20 = ind.sma(close, 20)
        trend = ind.volume_trend(volume, 5, 20)
        rets = ind.returns(close)
        corr = ind.rolling_corr(rets[1:], volume[1:], 20)
        vol = _rolling_volatility(close, 20)
        for k in range(warmup, z - a):
            date = dates[k]
            if keep is not None and not keep(a + k, date):
                continue
            back = min(5, min(k + 1, lookback) - 1)
            yield a + k, {
                "symbol": symbol,
                "as_of": date,
                "technical": _technical(float(close[k]), float(rsi[k]), float(hist[k]),
                                        float(sma20[k]), float(vol[k])),
                "volume": _volume(float(trend[k]), float(corr[k - 1]) if k >= 20 else math.nan,
                                  float(close[k] - close[k - back]), date),
                "market_context": context_at(date),
            }


def _rolling_volatility(close, sessions: int):
    """:func:`volatility_pct` at every bar (NaN where it is NaN)."""
    import numpy as np

    out = np.full(len(close), np.nan)
    if len(close) < sessions + 1:
        return out
    with np.errstate(divide="ignore", invalid="ignore"):
        r = close[1:] / close[:-1] - 1.0
    windows = np.lib.stride_tricks.sliding_window_view(r, sessions)
    std = windows.std(axis=1, ddof=1) * 100.0
    closes = np.lib.stride_tricks.sliding_window_view(close, sessions + 1)
    bad = ~np.all(np.isfinite(closes) & (closes > 0), axis=1)
    out[sessions:] = np.where(bad, np.nan, std)
    return out


class IndexContext:
    """The market context at each session's close, from the index's bars: what
    :func:`market_context` gives for the index bars up to that session, memoized by bar."""

    def __init__(self, index_bars, cfg, lookback: int) -> None:
        import bisect

        b = as_bars(index_bars)
        self._bisect = bisect.bisect_right
        self.dates = [d[:10] for d in b.dates]
        self.closes = [float(c) for c in b.close]
        self.cfg, self.lookback = cfg, lookback
        self.sessions = cfg["context.sessions"]
        self._memo: dict[int, dict[str, Any]] = {}

    def __call__(self, session: str) -> dict[str, Any]:
        j = self._bisect(self.dates, session[:10])
        ctx = self._memo.get(j)
        if ctx is None:
            window = self.closes[max(0, j - self.lookback):j]
            ctx = self._memo[j] = context_for_trend(trend_from_closes(window, self.sessions),
                                                    self.cfg)
        return dict(ctx)
