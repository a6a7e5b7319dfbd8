"""Pure market functions: bars in, summaries out. No I/O, no clock unless given one.

The market-data service builds its answers from these, and the training service (issue 7)
replays history with them day by day on slices (``summarize(sym, bars[:i], index[:i], cfg)``),
so the live and the replayed numbers are the same code.

Bars are a :class:`Bars` (numpy arrays plus ISO session dates) or a list of
``{date, open, high, low, close, volume}`` dicts (the ``get_bars`` shape); slicing a
:class:`Bars` gives a :class:`Bars`.

Scores and their ranges (all floats, rounded; ``None`` where an input is still in warm-up):

- ``technical.tech_score`` in **0..1, 0.5 neutral**: the mean of three signals each in -1..1,
  mapped to 0..1: RSI read contrarian, ``(50 - rsi) / 50`` (oversold is bullish); the MACD
  histogram relative to price, ``tanh(hist / price / 0.002)``; and the distance from the
  20-session SMA, ``tanh(price_vs_sma20 / 3)`` (above the average is bullish).
- ``technical.price_vs_sma20``: percent above (+) or below (-) the 20-session SMA.
- ``technical.volatility_pct``: the standard deviation of the last 20 daily close-to-close
  returns, in percent (``None`` before 21 bars). Not part of the score: the calibration of a
  HOLD (right when the price moves less than a band) needs it, since how far a price moves
  is first of all a matter of how volatile it is.
- ``technical.current_price``: the last close as the source gives it (adjusted, full
  precision); ``market_price``: the same rounded to the ASX tick size, the price one can trade.
- ``volume.volume_trend``: 5-session over 20-session average volume minus 1 (0 = steady).
- ``volume.price_volume_correlation`` in -1..1: Pearson r of daily returns and volume over 20
  sessions (> 0: up days trade more, accumulation).
- ``volume.volume_quality_score`` in **0..1, 0.5 neutral**: ``0.5 + 0.3 * tanh(2 * trend) *
  direction + 0.2 * correlation``, where direction is the sign of the 5-session price change:
  rising volume that confirms the move, and volume that follows up days, score high.
- ``volume.volume_through``: the last session the volume measures counted; during a session
  that is yesterday, since a day still trading has only part of its volume.
- ``market_context``: the index's percentage change over ``context.sessions`` sessions
  (``trend_pct``) placed in the configured bands (``context.*``), with that band's
  ``multiplier.*`` and ``threshold.*``. Without enough index bars: NEUTRAL, ``fallback: true``.

Freshness (:func:`fresh_until`, :func:`is_final`) follows the ASX: during a session a cached
series is fresh for :data:`LIVE_TTL`; after the close until the next session opens (a series
still missing the day's bar is asked again every :data:`LIVE_TTL` for
:data:`LATE_BAR_WINDOW`). Free ASX
prices are delayed :data:`DATA_DELAY`, so a day's bar is final only that long after the
closing auction.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from typing import Any

from trading.market import asx

LIVE_TTL = dt.timedelta(minutes=5)
LATE_BAR_WINDOW = dt.timedelta(hours=3)  # after settling, how long a missing bar is asked for
DATA_DELAY = dt.timedelta(minutes=20)
CONTEXTS = ("BEARISH", "WEAK_BEARISH", "NEUTRAL", "WEAK_BULLISH", "BULLISH")
FIELDS = ("open", "high", "low", "close", "volume")


class Bars:
    """Daily (or weekly) bars: ``dates`` (ISO session dates) and float arrays per field."""

    __slots__ = ("dates", "open", "high", "low", "close", "volume")

    def __init__(self, dates: Sequence[str], open, high, low, close, volume) -> None:
        import numpy as np

        self.dates = list(dates)
        self.open = np.asarray(open, dtype=float)
        self.high = np.asarray(high, dtype=float)
        self.low = np.asarray(low, dtype=float)
        self.close = np.asarray(close, dtype=float)
        self.volume = np.asarray(volume, dtype=float)
        n = len(self.dates)
        if any(len(getattr(self, f)) != n for f in FIELDS):
            raise ValueError("every field of Bars needs one value per date")

    @classmethod
    def empty(cls) -> Bars:
        return cls([], [], [], [], [], [])

    @classmethod
    def from_rows(cls, rows: Sequence[Mapping[str, Any]] | Sequence[Sequence[Any]]) -> Bars:
        """From ``{date, open, ...}`` dicts or ``(date, open, high, low, close, volume)`` rows."""
        if not rows:
            return cls.empty()
        if isinstance(rows[0], Mapping):
            cols = [[r["date"] for r in rows]] + [[r[f] for r in rows] for f in FIELDS]
        else:
            cols = [list(c) for c in zip(*rows)]
        return cls(*[[(math.nan if v is None else v) for v in c] if i else c
                     for i, c in enumerate(cols)])

    def to_rows(self) -> list[dict[str, Any]]:
        out = []
        for i, d in enumerate(self.dates):
            out.append({"date": d, **{f: _num(getattr(self, f)[i], 6) for f in FIELDS}})
        return out

    def __len__(self) -> int:
        return len(self.dates)

    def __getitem__(self, index: slice) -> Bars:
        if not isinstance(index, slice):
            raise TypeError("Bars support slicing only")
        return Bars(self.dates[index], *(getattr(self, f)[index] for f in FIELDS))

    def __repr__(self) -> str:
        span = f"{self.dates[0]}..{self.dates[-1]}" if self.dates else "empty"
        return f"<Bars {len(self)} {span}>"


def as_bars(bars: Bars | Sequence[Mapping[str, Any]] | None) -> Bars:
    if bars is None:
        return Bars.empty()
    return bars if isinstance(bars, Bars) else Bars.from_rows(bars)


def _num(x: Any, digits: int) -> float | None:
    """A JSON-friendly float: rounded, None for NaN/inf."""
    if x is None:
        return None
    x = float(x)
    return round(x, digits) if math.isfinite(x) else None


def tick_size(price: float) -> float:
    """ASX price steps: 0.1c below 10c, 0.5c below $2, 1c from $2."""
    if price < 0.10:
        return 0.001
    if price < 2.00:
        return 0.005
    return 0.01


def to_tick(price: float) -> float | None:
    if not math.isfinite(price):
        return None
    step = tick_size(price)
    return round(round(price / step) * step, 3)


def technical_summary(bars) -> dict[str, Any]:
    """``{current_price, rsi, macd_histogram, price_vs_sma20, tech_score, market_price,
    volatility_pct}`` of the last bar, from the bars since the last gap
    (:func:`trading.market.gaps.gaps`)."""
    from trading.market import indicators as ind

    b = since_last_gap(bars)
    if not len(b):
        return {"current_price": None, "rsi": None, "macd_histogram": None,
                "price_vs_sma20": None, "tech_score": 0.5, "market_price": None,
                "volatility_pct": None}
    close = b.close
    return _technical(float(close[-1]), float(ind.rsi(close, 14)[-1]),
                      float(ind.macd(close)[2][-1]), float(ind.sma(close, 20)[-1]),
                      volatility_pct(close, 20))


def _technical(price: float, rsi: float, hist: float, sma20: float, volatility: float
               ) -> dict[str, Any]:
    """The technical summary from its indicator values (NaN: still warming up)."""
    vs_sma = (price / sma20 - 1.0) * 100.0 if sma20 > 0 else math.nan
    signals = []
    if math.isfinite(rsi):
        signals.append(max(-1.0, min(1.0, (50.0 - rsi) / 50.0)))
    if math.isfinite(hist) and price > 0:
        signals.append(math.tanh(hist / price / 0.002))
    if math.isfinite(vs_sma):
        signals.append(math.tanh(vs_sma / 3.0))
    # sum() adds left to right from 0, as numpy's mean does below eight values: same bits.
    score = 0.5 + 0.5 * (sum(signals) / len(signals)) if signals else 0.5
    return {
        "current_price": _num(price, 4),
        "rsi": _num(rsi, 4),
        "macd_histogram": _num(hist, 6),
        "price_vs_sma20": _num(vs_sma, 4),
        "tech_score": _num(min(1.0, max(0.0, score)), 4),
        "market_price": to_tick(price),
        "volatility_pct": _num(volatility, 4),
    }


def volatility_pct(close, sessions: int = 20) -> float:
    """Standard deviation (ddof 1) of the last ``sessions`` daily returns, in percent; NaN
    with fewer than ``sessions + 1`` closes or a non-positive close among them."""
    import numpy as np

    c = np.asarray(close, dtype=float)[-(sessions + 1):]
    if len(c) < sessions + 1 or not np.all(np.isfinite(c)) or np.any(c <= 0):
        return math.nan
    return float(np.std(c[1:] / c[:-1] - 1.0, ddof=1) * 100.0)


def volume_summary(bars, live: bool = False) -> dict[str, Any]:
    """``{volume_trend, price_volume_correlation, volume_quality_score, volume_through}``,
    from the bars since the last gap (:func:`trading.market.gaps.gaps`).

    ``live``: the last bar is a session still trading (or not yet settled in the feed). Its
    volume is a part of a day's, which next to whole days reads as volume collapsing (at
    11:00 about a fifth of a day has traded), so the volume measures then use the completed
    sessions only; ``volume_through`` names the last session they counted. The direction of
    the price move still uses the latest price."""
    from trading.market import indicators as ind

    b = since_last_gap(bars)
    done = b[:-1] if live else b
    if len(done) < 2:
        return {"volume_trend": None, "price_volume_correlation": None,
                "volume_quality_score": 0.5,
                "volume_through": done.dates[-1] if len(done) else None}
    trend = float(ind.volume_trend(done.volume, 5, 20)[-1])
    corr = float(ind.rolling_corr(ind.returns(done.close)[1:], done.volume[1:], 20)[-1]) \
        if len(done) > 20 else math.nan
    k = min(5, len(b) - 1)
    return _volume(trend, corr, float(b.close[-1] - b.close[-1 - k]), done.dates[-1])


def _volume(trend: float, corr: float, move: float, through: str) -> dict[str, Any]:
    """The volume summary from its measures; ``move``: the price change over 5 sessions."""
    direction = 0.0 if not math.isfinite(move) or move == 0 else math.copysign(1.0, move)
    score = 0.5
    if math.isfinite(trend):
        score += 0.3 * math.tanh(2.0 * trend) * direction
    if math.isfinite(corr):
        score += 0.2 * corr
    return {
        "volume_trend": _num(trend, 4),
        "price_volume_correlation": _num(corr, 4),
        "volume_quality_score": _num(min(1.0, max(0.0, score)), 4),
        "volume_through": through,
    }


def _cfg(cfg):
    if cfg is None:
        from trading import config

        return config.get()
    return cfg


def index_trend(index_bars, sessions: int) -> float | None:
    """Percentage change of the index's close over the last ``sessions`` sessions
    (``index_bars``: bars, ``get_bars`` rows, or a plain list of closes)."""
    closes = as_bars(index_bars).close if not _is_closes(index_bars) else index_bars
    return trend_from_closes(closes, sessions)


def _is_closes(x) -> bool:
    return isinstance(x, (list, tuple)) and (not x or isinstance(x[0], (int, float)))


def trend_from_closes(closes: Sequence[float], sessions: int) -> float | None:
    """Percentage change from ``closes[-1 - sessions]`` to ``closes[-1]`` (plain floats; no
    numpy needed, so a cold process can place the index from its stored last closes)."""
    if len(closes) < sessions + 1:
        return None
    last, first = float(closes[-1]), float(closes[-1 - sessions])
    if not (math.isfinite(last) and math.isfinite(first)) or first <= 0:
        return None
    return (last / first - 1.0) * 100.0


def context_for_trend(trend_pct: float | None, cfg=None) -> dict[str, Any]:
    """Place a trend in the configured bands; ``None`` gives NEUTRAL flagged as a fallback."""
    cfg = _cfg(cfg)
    if trend_pct is None or not math.isfinite(trend_pct):
        name, fallback = "NEUTRAL", True
    else:
        fallback = False
        # Classify the value as reported (rounded), so -0.5000000000000004 is not "below -0.5".
        trend_pct = round(trend_pct, 4)
        if trend_pct < cfg["context.bearish"]:
            name = "BEARISH"
        elif trend_pct < cfg["context.weak_bearish"]:
            name = "WEAK_BEARISH"
        elif trend_pct > cfg["context.bullish"]:
            name = "BULLISH"
        elif trend_pct > cfg["context.weak_bullish"]:
            name = "WEAK_BULLISH"
        else:
            name = "NEUTRAL"
    key = name.lower()
    return {
        "context": name,
        "trend_pct": None if fallback else _num(trend_pct, 4),
        "confidence_multiplier": cfg[f"multiplier.{key}"],
        "buy_threshold": cfg[f"threshold.{key}"],
        "fallback": fallback,
    }


def market_context(index_bars, cfg=None) -> dict[str, Any]:
    """``{context, trend_pct, confidence_multiplier, buy_threshold, fallback}`` from index bars."""
    cfg = _cfg(cfg)
    return context_for_trend(index_trend(index_bars, cfg["context.sessions"]), cfg)


def summarize(symbol: str, bars, index_bars, cfg=None) -> dict[str, Any]:
    """``{symbol, as_of, technical, volume, market_context}``: get_market_data without the
    source and staleness fields. ``as_of`` is the session date of the last bar."""
    b = as_bars(bars)
    return {
        "symbol": symbol,
        "as_of": b.dates[-1] if len(b) else None,
        "technical": technical_summary(b),
        "volume": volume_summary(b),
        "market_context": market_context(index_bars, cfg),
    }


def since_last_gap(bars):
    """The bars after the last gap (all of them when there is none): what a summary may use."""
    from trading.market.gaps import gaps

    b = as_bars(bars)
    found = gaps(b.dates)
    return b[found[-1][0]:] if found else b


# -- freshness -------------------------------------------------------------------------------
def settles_at(day: dt.date) -> dt.datetime:
    """When the free (delayed) feed has ``day``'s final bar."""
    return asx.final_at(day) + DATA_DELAY


def is_final(day: dt.date, fetched_at: dt.datetime) -> bool:
    """Whether a bar for session ``day`` fetched at ``fetched_at`` can no longer change.

    (Yahoo's later corrections are picked up by re-fetching the last few sessions.)"""
    if not asx.is_session(day):
        return True  # a bar on a closure is junk either way; it will not trade further
    return fetched_at >= settles_at(day)


def fresh_until(fetched_at: dt.datetime, last_session: str | None = None) -> dt.datetime:
    """How long a series fetched at ``fetched_at`` may be served without asking again.

    While a session is live (open until its bar settles): :data:`LIVE_TTL`. Before the open
    of a session day: until the open. Otherwise: until the next session opens, except when
    the series (``last_session``: its last bar) lacks a session that has closed: the feed is
    late with it, so ask again every :data:`LIVE_TTL` for :data:`LATE_BAR_WINDOW` after it
    should have settled (a stock suspended that day never gets one; then until the open)."""
    t = fetched_at.astimezone(asx.TZ)
    day = t.date()
    hours = asx.session_hours(day)
    if hours is not None:
        if t < hours[0]:
            return hours[0]
        settled = settles_at(day)
        if t < settled:
            return min(t + LIVE_TTL, settled)
        if last_session is not None and last_session < day.isoformat() \
                and t < settled + LATE_BAR_WINDOW:
            return t + LIVE_TTL
    return asx.session_hours(asx.next_session(day))[0]
