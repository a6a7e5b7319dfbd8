"""A stand-in for the ``yfinance`` package, put first on a live handler's ``PYTHONPATH`` by
tests that need Yahoo up, down or rate-limiting (the one fake edge of the project).

``download()`` appends one line per call to ``$TRADING_TEST_YAHOO_LOG`` (so a test counts upstream
attempts) and does what ``$TRADING_TEST_YAHOO_MODE`` (a file, read on every call) says:

- ``ok CSVDIR``: the frame ``yf.download`` returns, two-level (Price, Ticker) columns, from
  the CSV files in CSVDIR (``tests/data/asx-daily`` layout); with an intraday ``interval``
  (``1h``, ``30m``, ``15m``), from ``SYMBOL.<interval>.csv`` there
  (``tests/data/asx-intraday`` layout), indexed ``Datetime`` in Australia/Sydney, the bars
  starting in ``[start, end)``;
- ``empty``: an empty frame and nothing logged (no ticker has data);
- ``network``: what yfinance 1.x does when the host is unreachable: it catches curl_cffi's
  ``DNSError`` per ticker, logs it on the ``yfinance`` logger and returns an empty frame;
- ``rate-limit``: the same for ``YFRateLimitError`` (HTTP 429);
- ``raise-network``: raises ``ConnectionError`` as curl_cffi does (older yfinance, or the
  calls yfinance lets through).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

_CURL_DNS = ("Failed to perform, curl: (6) Could not resolve host: query2.finance.yahoo.com. "
             "See https://curl.se/libcurl/c/libcurl-errors.html first for more details.")


class YFRateLimitError(Exception):
    """Same name as yfinance's, which is what trading.market.yahoo.classify matches."""


class ConnectionError(OSError):  # noqa: A001 - curl_cffi's name, matched by classify
    """curl_cffi.requests.exceptions.ConnectionError stand-in."""


def set_tz_cache_location(path: str) -> None:
    Path(path).mkdir(parents=True, exist_ok=True)


def download(tickers, start=None, end=None, **kw):
    import pandas as pd

    mode = Path(os.environ["TRADING_TEST_YAHOO_MODE"]).read_text().split()
    with open(os.environ["TRADING_TEST_YAHOO_LOG"], "a") as log:
        log.write(f"{os.getpid()} {mode[0]} {','.join(tickers)}\n")
    if mode[0] in ("network", "rate-limit"):
        log = logging.getLogger("yfinance")
        if mode[0] == "network":
            why = f"DNSError({_CURL_DNS!r})"
            for s in tickers:
                log.error("Failed to get ticker '%s' reason: %s", s, _CURL_DNS)
        else:
            why = "YFRateLimitError('Too Many Requests. Rate limited. Try after a while.')"
        log.error("\n%d Failed download%s:", len(tickers), "s" if len(tickers) > 1 else "")
        log.error(f"{list(tickers)}: {why}")
        import pandas as pd
        return pd.DataFrame()
    if mode[0] == "raise-network":
        raise ConnectionError("Failed to perform, curl: (6) Could not resolve host: "
                              "query2.finance.yahoo.com")
    if mode[0] == "empty":
        return pd.DataFrame()
    interval = kw.get("interval", "1d")
    if interval != "1d":
        return _intraday(tickers, start, end, interval, Path(mode[1]))
    parts = {}
    for s in tickers:
        path = Path(mode[1]) / f"{s}.csv"
        if not path.exists():
            continue
        from trading.market.sources import parse_csv  # both CSV layouts of the shared data

        bars = parse_csv(path)
        index = pd.DatetimeIndex(pd.to_datetime(bars.dates).tz_localize("Australia/Sydney"),
                                 name="Date")
        parts[s] = pd.DataFrame({"Close": bars.close, "High": bars.high, "Low": bars.low,
                                 "Open": bars.open, "Volume": bars.volume}, index=index)
    if not parts:
        return pd.DataFrame()
    frame = pd.concat(parts, axis=1).swaplevel(0, 1, axis=1).sort_index(axis=1, level=0)
    frame.columns.names = ["Price", "Ticker"]
    return frame


def _intraday(tickers, start, end, interval: str, folder: Path):
    import pandas as pd

    from trading.market.reading import read_csv

    parts = {}
    for s in tickers:
        path = folder / f"{s}.{interval}.csv"
        if not path.exists():
            continue
        bars = read_csv(path, interval=interval)[0]
        index = pd.DatetimeIndex(pd.to_datetime(bars.dates, utc=True), name="Datetime"
                                 ).tz_convert("Australia/Sydney")
        frame = pd.DataFrame({"Close": bars.close, "High": bars.high, "Low": bars.low,
                              "Open": bars.open, "Volume": bars.volume}, index=index)
        parts[s] = frame[(frame.index >= pd.Timestamp(start)) & (frame.index < pd.Timestamp(end))]
    if not parts:
        return pd.DataFrame()
    frame = pd.concat(parts, axis=1).swaplevel(0, 1, axis=1).sort_index(axis=1, level=0)
    frame.columns.names = ["Price", "Ticker"]
    return frame
