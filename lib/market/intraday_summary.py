"""The summary of intraday bars, as the old service computed it: pure, no I/O, no clock.

The monolith this project replaces fetched ``yf.Ticker(symbol).history(period="5d",
interval="1h")`` and computed its technicals over those bars: RSI(14), the MACD(12, 26, 9)
histogram, price vs SMA20, the tech score, the volume trend, the price-volume correlation
and the volume quality. :func:`summarize` gives the same fields, in the shape of
:func:`trading.market.summary.summarize` (``{symbol, as_of, technical, volume,
market_context}``), from the **complete** bars of an intraday interval over that window:

- **The window** is the bars of the last :data:`WINDOW_SESSIONS` ``[interval]`` sessions the
  series has, the session of the last bar counted as one however few of its bars are
  complete (Yahoo's ``period="5d"``: five trading days, today's included). Every indicator
  counts **bars**, not sessions: RSI over 14 bars, SMA20 over 20 bars, MACD 12/26/9 in bars,
  the volume trend 5 over 20 bars, the correlation over 20 bars' returns, the volume quality's
  move over 5 bars; each is ``None`` while the window holds fewer bars than it needs
  (:mod:`trading.market.indicators`: the MACD histogram needs 34, which five ``1h`` sessions
  of seven bars reach only from the fifth session's sixth bar).
- **Gaps**: a window never spans one (:func:`trading.market.summary.since_last_gap` reads the
  first ten characters of a stamp as the session date).
- ``as_of`` is the stamp of the last bar used (``2024-04-05T15:00:00+11:00``), and
  ``volume.volume_through`` the same: the bars are complete, none is a partial one.
- ``market_context``: the index's bars of the same interval up to the symbol's last bar, over
  the same window (its last ``WINDOW_SESSIONS[interval]`` sessions); ``trend_pct`` is the
  index's change from the first close of that window to the last, placed in the configured
  bands (``context.*``; ``context.sessions`` is the daily measure's and is not used here).
  Without at least two index bars: NEUTRAL, ``fallback: true``.

Bars are a :class:`~trading.market.summary.Bars` whose ``dates`` are the bar stamps, or rows:
``get_bars``'s intraday rows (``time`` is the stamp; a row with ``final: false`` is the bar
in progress and is left out) or ``{date, open, ...}`` rows with the stamp as ``date``.

:func:`window_summaries` is the streaming form for a replay: the summary at every bar of a
whole series, each indicator computed once per session's window instead of once per bar, with
the same values as :func:`summarize` on the bars up to that bar (the window starts at a
session's first bar, so every bar of a session shares it; the indicators are prefix-stable,
so the arrays over the window to the session's last bar hold each bar's value).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from trading.market.summary import (Bars, _technical, _volume, as_bars, context_for_trend,
                                    since_last_gap, technical_summary, volume_summary)

# period="5d": the old service's window, for every intraday interval it could be asked for.
WINDOW_SESSIONS: dict[str, int] = {"1h": 5, "30m": 5, "15m": 5}

__all__ = ["WINDOW_SESSIONS", "as_intraday_bars", "window_start", "window", "whole_windows",
           "summarize",
           "index_context", "IndexWindows", "window_summaries"]


def _sessions(interval: str) -> int:
    try:
        return WINDOW_SESSIONS[interval]
    except KeyError:
        raise ValueError(f"interval {interval!r} is not intraday; use "
                         f"{', '.join(WINDOW_SESSIONS)}") from None


def as_intraday_bars(bars) -> Bars:
    """Bars keyed by stamp: a :class:`Bars` as it is; rows by their ``time`` (else ``date``),
    rows with ``final: false`` left out."""
    if bars is None or isinstance(bars, Bars):
        return as_bars(bars)
    rows = list(bars)
    if rows and isinstance(rows[0], Mapping):
        rows = [{**r, "date": r.get("time") or r["date"]} for r in rows
                if r.get("final", True) is not False]
    return as_bars(rows)


def window_start(dates: Sequence[str], end: int, sessions: int) -> int:
    """The index of the first bar of the window that ends with bar ``end - 1``: the first bar
    of the ``sessions``-th last session among ``dates[:end]``."""
    if end <= 0:
        return 0
    seen, day, i = 0, None, end
    while i > 0:
        d = dates[i - 1][:10]
        if d != day:
            seen += 1
            if seen > sessions:
                break
            day = d
        i -= 1
    return i


def window(bars, interval: str) -> Bars:
    """The bars of the last ``WINDOW_SESSIONS[interval]`` sessions of ``bars``."""
    b = as_intraday_bars(bars)
    return b[window_start(b.dates, len(b), _sessions(interval)):]


def index_context(index_bars, upto: str | None, interval: str, cfg=None) -> dict[str, Any]:
    """The market context from the index's bars up to the stamp ``upto`` (all of them when
    None), over the window: its change from the window's first close to its last."""
    b = as_intraday_bars(index_bars)
    end = len(b) if upto is None else bisect.bisect_right(b.dates, upto)
    start = max(window_start(b.dates, end, _sessions(interval)),
                _after_gap(_gap_starts(b.dates[:end]), end))
    return context_for_trend(_change(b.close, start, end), _cfg(cfg))


def whole_windows(dates: Sequence[str], interval: str) -> list[bool]:
    """For each bar, whether its window is whole: its session is at least the
    :data:`WINDOW_SESSIONS` ``[interval]``-th since the series' start or its last gap (before
    that the bar is warm-up, as a daily series' first sessions are)."""
    need = _sessions(interval)
    starts = set(_gap_starts(dates))
    out: list[bool] = []
    count, day = 0, None
    for i, d in enumerate(dates):
        if i in starts:
            count, day = 0, None
        if d[:10] != day:
            count, day = count + 1, d[:10]
        out.append(count >= need)
    return out


def _gap_starts(dates: Sequence[str]) -> list[int]:
    from trading.market.gaps import gaps

    return [i for i, _ in gaps(dates)]


def _after_gap(starts: list[int], end: int) -> int:
    """The first bar after the last gap before bar ``end`` (0 when there is none)."""
    k = bisect.bisect_right(starts, end - 1)
    return starts[k - 1] if k else 0


def _change(close, start: int, end: int) -> float | None:
    if end - start < 2:
        return None
    first, last = float(close[start]), float(close[end - 1])
    if not (math.isfinite(first) and math.isfinite(last)) or first <= 0:
        return None
    return (last / first - 1.0) * 100.0


def _cfg(cfg):
    if cfg is None:
        from trading import config

        return config.get()
    return cfg


def summarize(symbol: str, bars, index_bars, interval: str, cfg=None) -> dict[str, Any]:
    """``{symbol, as_of, technical, volume, market_context}`` of the complete intraday
    ``bars`` (the caller passes complete ones) over the old service's window; ``as_of``: the
    stamp of the last bar. See the module docstring for each field's window."""
    b = window(bars, interval)
    last = b.dates[-1] if len(b) else None
    return {
        "symbol": symbol,
        "as_of": last,
        "technical": technical_summary(b),
        "volume": volume_summary(b),
        "market_context": index_context(index_bars, last, interval, cfg),
    }


class IndexWindows:
    """:func:`index_context` at any stamp, memoized by the index's last bar at that stamp:
    a replay asks for it once per symbol bar."""

    def __init__(self, index_bars, interval: str, cfg) -> None:
        b = as_intraday_bars(index_bars)
        self.dates, self.close = b.dates, b.close
        self.sessions, self.cfg = _sessions(interval), cfg
        self._gaps = _gap_starts(self.dates)
        self._memo: dict[int, dict[str, Any]] = {}

    def __call__(self, stamp: str) -> dict[str, Any]:
        end = bisect.bisect_right(self.dates, stamp)
        ctx = self._memo.get(end)
        if ctx is None:
            start = max(window_start(self.dates, end, self.sessions),
                        _after_gap(self._gaps, end))
            ctx = self._memo[end] = context_for_trend(_change(self.close, start, end),
                                                      self.cfg)
        return dict(ctx)


def window_summaries(symbol: str, bars, index_bars, interval: str, cfg=None, *,
                     keep: Callable[[int, str], bool] | None = None,
                     context_at: Callable[[str], dict[str, Any]] | None = None
                     ) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(i, summary)`` for each bar ``i`` of ``bars`` (those ``keep(i, stamp)``
    picks): ``summarize(symbol, bars[:i + 1], index_bars, interval, cfg)``, with each
    indicator computed once per session over that session's window rather than once per bar.
    ``context_at(stamp)`` replaces the index's context (an :class:`IndexWindows` shared by
    many symbols); by default one is built from ``index_bars``."""
    from trading.market import indicators as ind
    from trading.market.series import _rolling_volatility

    b = as_intraday_bars(bars)
    if context_at is None:
        context_at = IndexWindows(index_bars, interval, _cfg(cfg))
    sessions = _sessions(interval)
    dates = b.dates
    i = 0
    while i < len(b):
        day = dates[i][:10]
        z = i
        while z < len(b) and dates[z][:10] == day:
            z += 1  # bars i..z-1 are one session's; they share the window's start
        wanted = [k for k in range(i, z) if keep is None or keep(k, dates[k])]
        if wanted:
            a = window_start(dates, z, sessions)
            w = since_last_gap(b[a:z])
            a = z - len(w)  # the window after its last gap, in the series' indices
            close, volume = w.close, w.volume
            rsi = ind.rsi(close, 14)
            hist = ind.macd(close)[2]
            sma20 = ind.sma(close, 20)
            vol = _rolling_volatility(close, 20)
            trend = ind.volume_trend(volume, 5, 20)
            corr = ind.rolling_corr(ind.returns(close)[1:], volume[1:], 20)
            for k in wanted:
                j, stamp = k - a, dates[k]
                if j < 1:  # one bar: what volume_summary says of fewer than two
                    vol_part = {"volume_trend": None, "price_volume_correlation": None,
                                "volume_quality_score": 0.5, "volume_through": stamp}
                else:
                    back = min(5, j)
                    vol_part = _volume(float(trend[j]),
                                       float(corr[j - 1]) if j >= 20 else math.nan,
                                       float(close[j] - close[j - back]), stamp)
                yield k, {
                    "symbol": symbol,
                    "as_of": stamp,
                    "technical": _technical(float(close[j]), float(rsi[j]), float(hist[j]),
                                            float(sma20[j]), float(vol[j])),
                    "volume": vol_part,
                    "market_context": context_at(stamp),
                }
        i = z
