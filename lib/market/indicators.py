"""Technical indicators on numpy arrays: same length out as in, NaN during the warm-up.

Conventions (the places where libraries disagree, decided once here):

- **Warm-up.** An indicator is NaN until it has all the data its definition needs:
  ``sma(x, n)`` and ``ema(x, n)`` from index ``n - 1``; ``rsi(close, 14)`` from index 14 (14
  changes need 15 closes); ``macd`` line from ``slow - 1`` (25), signal and histogram from
  ``slow + signal - 2`` (33, TA-Lib's first value). A NaN in the input propagates.
- **EMA seeding.** An EMA starts from the simple mean of its first ``n`` values (TA-Lib's
  convention), then ``ema = prev + alpha * (x - prev)`` with ``alpha = 2 / (n + 1)``. The ``ta``
  package seeds with the first value instead; the two converge within ~200 bars (0.93^200), so
  fetch a year of daily bars before trusting MACD.
- **RSI is Wilder's**, as TA-Lib computes it: the first average gain/loss is the simple mean of
  the first ``period`` changes, then ``avg = (prev * (period - 1) + current) / period``.
  RSI = 100 * gain / (gain + loss). Not Cutler's rolling-mean RSI, which differs by up to ~20
  points. **Flat prices** (no gains and no losses) give **50** (TA-Lib says 0, ``ta`` 100);
  only gains give 100, only losses 0.
- **Volume measures** are ratios and correlations, so they are unitless and comparable across
  symbols: ``volume_trend`` is short over long average volume minus 1 (0 = steady);
  ``rolling_corr`` is Pearson's r over a window, NaN where either side is constant.
"""

from __future__ import annotations

import numpy as np

__all__ = ["sma", "ema", "rsi", "macd", "returns", "volume_trend", "rolling_corr"]


def _as_array(x) -> np.ndarray:
    a = np.asarray(x, dtype=float)
    if a.ndim != 1:
        raise ValueError("indicators take one-dimensional arrays")
    return a


def _check_period(n: int) -> None:
    if int(n) != n or n < 1:
        raise ValueError(f"period must be a positive whole number, got {n!r}")


def sma(x, n: int) -> np.ndarray:
    """Simple moving average over ``n`` values; NaN for the first ``n - 1``."""
    _check_period(n)
    x = _as_array(x)
    out = np.full(x.shape, np.nan)
    if len(x) >= n:
        windows = np.lib.stride_tricks.sliding_window_view(x, n)
        out[n - 1:] = windows.mean(axis=1)
    return out


def ema(x, n: int) -> np.ndarray:
    """Exponential moving average, alpha = 2/(n+1), seeded with the SMA of the first ``n``.

    Leading NaNs are skipped (so an EMA of a series with a warm-up, like the MACD line, starts
    ``n - 1`` values after its first real value).
    """
    _check_period(n)
    x = _as_array(x)
    out = np.full(x.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(x))
    if not len(valid):
        return out
    start = valid[0]
    if len(x) - start < n:
        return out
    alpha = 2.0 / (n + 1)
    prev = x[start:start + n].mean()
    out[start + n - 1] = prev
    # A plain loop: a year of daily bars is ~250 steps, cheaper than any vector trick here.
    for i in range(start + n, len(x)):
        prev = prev + alpha * (x[i] - prev)
        out[i] = prev
    return out


def rsi(close, period: int = 14) -> np.ndarray:
    """Wilder's RSI (0..100); see the module docstring for warm-up and flat prices."""
    _check_period(period)
    close = _as_array(close)
    out = np.full(close.shape, np.nan)
    if len(close) <= period:
        return out
    change = np.diff(close)
    gain = np.where(change > 0, change, 0.0)
    loss = np.where(change < 0, -change, 0.0)
    avg_gain = gain[:period].mean()
    avg_loss = loss[:period].mean()
    out[period] = _rsi_value(avg_gain, avg_loss)
    for i in range(period, len(change)):
        avg_gain = (avg_gain * (period - 1) + gain[i]) / period
        avg_loss = (avg_loss * (period - 1) + loss[i]) / period
        out[i + 1] = _rsi_value(avg_gain, avg_loss)
    if np.isnan(change).any():  # a NaN close poisons everything after it, as it should
        first = int(np.flatnonzero(np.isnan(change))[0]) + 1
        out[first:] = np.nan
    return out


def _rsi_value(gain: float, loss: float) -> float:
    total = gain + loss
    if total == 0:
        return 50.0  # flat prices: neither overbought nor oversold
    return 100.0 * gain / total


def macd(close, fast: int = 12, slow: int = 26, signal: int = 9
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(macd, signal, hist)``: EMA(fast) - EMA(slow), its EMA(signal), and their difference."""
    if fast >= slow:
        raise ValueError("macd needs fast < slow")
    close = _as_array(close)
    line = ema(close, fast) - ema(close, slow)
    sig = ema(line, signal)
    return line, sig, line - sig


def returns(close) -> np.ndarray:
    """Simple returns ``close[i] / close[i-1] - 1``; NaN at index 0."""
    close = _as_array(close)
    out = np.full(close.shape, np.nan)
    if len(close) > 1:
        with np.errstate(divide="ignore", invalid="ignore"):
            out[1:] = close[1:] / close[:-1] - 1.0
    return out


def volume_trend(volume, short: int = 5, long: int = 20) -> np.ndarray:
    """``sma(volume, short) / sma(volume, long) - 1``: > 0 when volume is rising."""
    if short >= long:
        raise ValueError("volume_trend needs short < long")
    s, l = sma(volume, short), sma(volume, long)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(l > 0, s / l - 1.0, np.nan)


def rolling_corr(a, b, n: int = 20) -> np.ndarray:
    """Pearson correlation of ``a`` and ``b`` over the last ``n`` values; NaN in the warm-up,
    where a window holds a NaN, or where either side is constant in the window."""
    _check_period(n)
    a, b = _as_array(a), _as_array(b)
    if a.shape != b.shape:
        raise ValueError("rolling_corr needs arrays of the same length")
    out = np.full(a.shape, np.nan)
    if n < 2 or len(a) < n:
        return out
    wa = np.lib.stride_tricks.sliding_window_view(a, n)
    wb = np.lib.stride_tricks.sliding_window_view(b, n)
    da = wa - wa.mean(axis=1, keepdims=True)
    db = wb - wb.mean(axis=1, keepdims=True)
    num = (da * db).sum(axis=1)
    den = np.sqrt((da * da).sum(axis=1) * (db * db).sum(axis=1))
    constant = (np.ptp(wa, axis=1) == 0) | (np.ptp(wb, axis=1) == 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(constant, np.nan, num / den)
    out[n - 1:] = np.clip(r, -1.0, 1.0)
    return out
