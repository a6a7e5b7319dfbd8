"""Price and volume features of many symbols at once, each known at its session's close,
with each stock also ranked against the other symbols of its session.

One row per symbol-session (:class:`Panel`). Every feature at row ``(s, k)`` is computed from
bars ``<= k`` of symbol ``s`` and the index's bars dated on or before that session; the
forward returns (the labels) are the only columns that look ahead, and they are kept apart.
A window that spans a gap (more than :data:`GAP_DAYS` calendar days between two bars: a
suspension, a sparse early history) gives a missing value, not a bridged one.

The features are the short-term reversal and momentum literature's usual set: 1-, 5-, 20- and
60-session log returns, 12-month momentum skipping the last month, 20- and 60-session
volatility, the volume shock, the traded value, the index-relative moves and the index's own,
and the session percentile ranks of the main ones (docs/choosing-the-predictor.md).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

GAP_DAYS = 10
HORIZONS = (1, 5)
RANKED = ("ret_1", "ret_5", "ret_20", "ret_60", "vol_20", "volume_shock", "rel_1", "rel_5")
OWN = ("ret_1", "ret_5", "ret_20", "ret_60", "mom_12_1", "vol_20", "vol_60", "volume_shock",
       "traded_value", "rel_1", "rel_5", "rel_20", "index_1", "index_5")
NAMES = OWN + tuple(f"rank_{n}" for n in RANKED)


@dataclass
class Panel:
    symbols: list[str]       # the symbol of each row
    dates: list[str]         # the session of each row (ISO)
    index: dict              # (symbol, date) -> row
    x: np.ndarray            # (rows, len(NAMES))
    forward: dict            # horizon -> (rows,) simple return to the close h bars on; NaN


def _days(dates: list[str]) -> np.ndarray:
    return np.array([dt.date.fromisoformat(d[:10]).toordinal() for d in dates], dtype=float)


def _trailing(values: np.ndarray, n: int) -> np.ndarray:
    """``values[k] - values[k - n]`` (NaN for ``k < n``)."""
    out = np.full(len(values), np.nan)
    if len(values) > n:
        out[n:] = values[n:] - values[:-n]
    return out


def _rolling(values: np.ndarray, n: int, how: str) -> np.ndarray:
    import pandas as pd

    r = pd.Series(values).rolling(n, min_periods=n)
    return (r.std(ddof=1) if how == "std" else r.mean()).to_numpy()


def symbol_features(dates: list[str], close, volume, index_dates: list[str],
                    index_close) -> tuple[dict, dict]:
    """One symbol's own features and forward returns, aligned with ``dates``."""
    close = np.asarray(close, dtype=float)
    volume = np.asarray(volume, dtype=float)
    n = len(close)
    logc = np.log(np.where(close > 0, close, np.nan))
    day = _days(dates)
    broken = np.zeros(n)
    broken[1:] = np.diff(day) > GAP_DAYS
    gaps = np.cumsum(broken)  # gaps[k] - gaps[k - m] > 0: a gap inside (k - m, k]

    def clean(m: int) -> np.ndarray:  # rows whose last m bars hold no gap
        ok = np.zeros(n, dtype=bool)
        if n > m:
            ok[m:] = gaps[m:] == gaps[:-m]
        return ok

    f: dict[str, np.ndarray] = {}
    for m in (1, 5, 20, 60):
        f[f"ret_{m}"] = np.where(clean(m), _trailing(logc, m), np.nan)
    lagged = np.full(n, np.nan)
    lagged[21:] = logc[:-21]
    mom = np.full(n, np.nan)
    mom[252:] = lagged[252:] - logc[:-252]
    f["mom_12_1"] = np.where(clean(252), mom, np.nan)
    step = np.concatenate([[np.nan], np.diff(logc)])
    step[broken.astype(bool)] = np.nan
    for m in (20, 60):
        f[f"vol_{m}"] = np.where(clean(m), _rolling(step, m, "std"), np.nan)
    before = np.concatenate([[np.nan], _rolling(volume, 20, "mean")[:-1]])
    with np.errstate(divide="ignore", invalid="ignore"):
        f["volume_shock"] = np.where(clean(21), np.log((volume + 1) / (before + 1)), np.nan)
        f["traded_value"] = np.where(clean(20), np.log(_rolling(close * volume, 20, "mean")
                                                       + 1), np.nan)
    # the index as of each session (its last close dated on or before it)
    ilog = np.log(np.asarray(index_close, dtype=float))
    at = np.searchsorted(np.asarray(index_dates), np.asarray(dates), side="right") - 1
    for m in (1, 5, 20):
        moved = np.full(n, np.nan)
        ok = at - m >= 0
        moved[ok] = ilog[at[ok]] - ilog[at[ok] - m]
        moved[at < 0] = np.nan
        if m in (1, 5):
            f[f"index_{m}"] = moved
        f[f"rel_{m}"] = f[f"ret_{m}"] - moved
    forward = {}
    for h in HORIZONS:
        r = np.full(n, np.nan)
        if n > h:
            ahead_ok = gaps[h:] == gaps[:-h]
            r[:-h] = np.where(ahead_ok, close[h:] / close[:-h] - 1, np.nan)
        forward[h] = r
    return f, forward


def panel(histories: dict, index) -> Panel:
    """The panel of ``histories`` (symbol -> Bars) against ``index`` (Bars)."""
    import pandas as pd

    index_dates = [d[:10] for d in index.dates]
    parts, symbols, dates, fwd = [], [], [], {h: [] for h in HORIZONS}
    for symbol in sorted(histories):
        b = histories[symbol]
        ds = [d[:10] for d in b.dates]
        own, forward = symbol_features(ds, b.close, b.volume, index_dates, index.close)
        parts.append(np.column_stack([own[name] for name in OWN]))
        symbols += [symbol] * len(ds)
        dates += ds
        for h in HORIZONS:
            fwd[h].append(forward[h])
    x = np.vstack(parts) if parts else np.empty((0, len(OWN)))
    frame = pd.DataFrame(x[:, [OWN.index(n) for n in RANKED]], columns=list(RANKED))
    frame["date"] = dates
    ranks = frame.groupby("date")[list(RANKED)].rank(pct=True).to_numpy()
    x = np.column_stack([x, ranks])
    index_of = {(s, d): i for i, (s, d) in enumerate(zip(symbols, dates))}
    return Panel(symbols, dates, index_of, x,
                 {h: np.concatenate(fwd[h]) if fwd[h] else np.empty(0) for h in HORIZONS})
