"""Write the intraday fixture of this folder, deterministically (see README.md):

    .venv/bin/python tests/data/asx-intraday/generate.py

The bars are synthetic but tied to real days: each session's 15-minute path runs from the
real daily open of CBA.AX (``tests/data/asx-daily/CBA.AX.csv``) to its real close through a
seeded Brownian bridge, the auction bar closes at the real close, and the day's volume is
the real one, spread in the ASX's U shape with about a fifth in the closing auction. The
frames have yfinance's real shape: a ``DatetimeIndex`` named ``Datetime`` in
Australia/Sydney, columns ``Open High Low Close Volume Dividends Stock Splits``, written with
``to_csv()`` as ``Ticker.history(interval=...)`` users save them.

The session times are written out below rather than taken from
:mod:`trading.market.intraday`, the module under test, so the fixture checks that code
instead of repeating it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
DAILY = HERE.parent / "asx-daily" / "CBA.AX.csv"
TZ = "Australia/Sydney"
SEED = 20240405

# The sessions written: around the end of daylight time (Sunday 7 April 2024, after Good
# Friday 29 March and Easter Monday 1 April), around its start (Sunday 6 October 2024; Monday
# 7 October is the NSW Labour Day, on which the ASX trades), and Christmas (the early closes
# of Tuesday 24 and Tuesday 31 December, the closures of 25 and 26 December).
WINDOWS = [("2024-03-25", "2024-04-12"), ("2024-09-30", "2024-10-11"),
           ("2024-12-16", "2024-12-31")]
EARLY_CLOSES = {"2024-12-24", "2024-12-31"}  # continuous trading to 14:00, auction at 14:00
FIFTEEN_MINUTE_WINDOW = ("2024-04-02", "2024-04-12")  # also written at 15m
# The hour Yahoo did not send: 13:00 on Tuesday 9 April 2024 (all four of its 15m bars).
MISSING = pd.Timestamp("2024-04-09 13:00", tz=TZ)


def daily() -> pd.DataFrame:
    frame = pd.read_csv(DAILY)
    frame["day"] = frame["Date"].str[:10]
    return frame.set_index("day")


def session_days(table: pd.DataFrame) -> list[str]:
    """The days of WINDOWS with a real daily bar (a weekday without one is a closure)."""
    days = []
    for first, last in WINDOWS:
        days += [d for d in table.index if first <= d <= last]
    return days


def quarter_hours(day: str) -> tuple[list[pd.Timestamp], pd.Timestamp]:
    """The 15-minute bar starts of a session and the stamp of its auction bar."""
    end = "14:00" if day in EARLY_CLOSES else "16:00"
    starts = pd.date_range(f"{day} 10:00", f"{day} {end}", freq="15min", tz=TZ,
                           inclusive="left")
    return list(starts), pd.Timestamp(f"{day} {end}", tz=TZ)


def fifteen_minutes(table: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    for day in session_days(table):
        real = table.loc[day]
        starts, auction = quarter_hours(day)
        n = len(starts)
        # A Brownian bridge of n steps from the open to a last traded price near the close.
        last_trade = float(real["Close"]) * (1 + rng.normal(0, 0.0008))
        walk = np.cumsum(rng.normal(0, 0.0015, n))
        bridge = walk - np.linspace(0, 1, n) * walk[-1]
        path = float(real["Open"]) + (last_trade - float(real["Open"])) * \
            np.linspace(0, 1, n + 1)[1:] + float(real["Open"]) * bridge
        opens = np.concatenate(([float(real["Open"])], path[:-1]))
        spread = np.abs(rng.normal(0, 0.0012, (2, n))) * opens
        highs = np.maximum(opens, path) + spread[0]
        lows = np.minimum(opens, path) - spread[1]
        u_shape = 1.0 + 2.5 * np.linspace(-1, 1, n) ** 2
        weights = u_shape * rng.uniform(0.7, 1.3, n)
        volume = float(real["Volume"])
        continuous = np.round(0.8 * volume * weights / weights.sum())
        for t, o, h, lo, c, v in zip(starts, opens, highs, lows, path, continuous):
            rows.append((t, o, h, lo, c, v))
        close = float(real["Close"])
        rows.append((auction, close, close, close, close, volume - continuous.sum()))
    frame = pd.DataFrame(rows, columns=["Datetime", "Open", "High", "Low", "Close", "Volume"])
    return frame.set_index("Datetime")


def hourly(quarter: pd.DataFrame) -> pd.DataFrame:
    """15-minute bars folded into hours (the auction bar stays alone)."""
    key = quarter.index.floor("h")
    grouped = quarter.groupby(key)
    out = pd.DataFrame({"Open": grouped["Open"].first(), "High": grouped["High"].max(),
                        "Low": grouped["Low"].min(), "Close": grouped["Close"].last(),
                        "Volume": grouped["Volume"].sum()})
    out.index.name = "Datetime"
    return out


def yfinance_shape(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out[["Open", "High", "Low", "Close"]] = out[["Open", "High", "Low", "Close"]].round(4)
    out["Volume"] = out["Volume"].astype("int64")
    out["Dividends"] = 0.0
    out["Stock Splits"] = 0.0
    out.index = pd.DatetimeIndex(out.index, name="Datetime").tz_convert(TZ)
    return out


def frames() -> dict[str, pd.DataFrame]:
    """``{file name: frame}`` of the fixture."""
    rng = np.random.default_rng(SEED)
    quarter = fifteen_minutes(daily(), rng)
    hours = hourly(quarter)
    hours = hours[hours.index != MISSING]
    quarter = quarter[quarter.index.floor("h") != MISSING]
    first, last = FIFTEEN_MINUTE_WINDOW
    days = quarter.index.strftime("%Y-%m-%d")
    quarter = quarter[(days >= first) & (days <= last)]
    return {"CBA.AX.1h.csv": yfinance_shape(hours), "CBA.AX.15m.csv": yfinance_shape(quarter)}


def main() -> None:
    for name, frame in frames().items():
        frame.to_csv(HERE / name)
        print(f"{name}: {len(frame)} bars, {frame.index[0]} .. {frame.index[-1]}")


if __name__ == "__main__":
    main()
