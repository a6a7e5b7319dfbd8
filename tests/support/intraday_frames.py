"""Intraday fixture files as yfinance returns them, and what a 20-minute-late feed has of
them at the moment ``TRADING_NOW`` names: the fake Yahoo of the intraday tests."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd

from trading import clock
from trading.market import asx, intraday

SYD = asx.TZ


def fixture_frame(path: Path) -> pd.DataFrame:
    """A fixture file as yfinance returned it: ``Datetime`` index in Australia/Sydney."""
    frame = pd.read_csv(path, index_col="Datetime")
    frame.index = pd.DatetimeIndex(pd.to_datetime(frame.index, utc=True), name="Datetime"
                                   ).tz_convert("Australia/Sydney")
    return frame


def seen_by_now(frame: pd.DataFrame, start: dt.datetime, interval: str) -> pd.DataFrame:
    """The bars of ``frame`` from ``start`` that the 20-minute-late feed has begun by now, the
    last of them partial (part of its move and of its volume) while it is in progress."""
    seen = pd.Timestamp(clock.now(SYD)) - pd.Timedelta(minutes=20)
    f = frame[(frame.index >= pd.Timestamp(start)) & (frame.index <= seen)].copy()
    if len(f):
        begun = f.index[-1]
        ends = pd.Timestamp(intraday.bar_end(begun.to_pydatetime(), interval))
        share = (seen - begun) / (ends - begun)
        if share < 1:
            row = f.iloc[-1]
            f.iloc[-1, f.columns.get_loc("Close")] = row.Open + (row.Close - row.Open) * share
            f.iloc[-1, f.columns.get_loc("Volume")] = int(row.Volume * share)
    return f
