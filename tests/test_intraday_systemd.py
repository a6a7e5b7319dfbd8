"""The seed-style monolith class, unchanged, on ``1h`` through the installed services
(issue 29): ``install.sh --user`` into a sandboxed systemd user manager (tests/sandbox.py),
the example class in the predictors folder, ``predictor_interval = "1h"`` in config.toml,
and hourly bars in yfinance's intraday layout in a folder the sandboxed market-data service
reads (``csv:DIR``: the hourly fixture of tests/data/asx-intraday and an index beside it).

The call goes through the prediction socket (systemd starts prediction, and it starts
market-data); the stored call must say interval 1h and its tech_data must be the summary of
the last hourly bars of the file, and a second run with no new bar must store nothing.
"""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from sandbox import UserManager

from conftest import REPO
from test_predictors_systemd import EXAMPLE, MOMENTUM, configure
from trading import config
from trading.market import intraday_summary
from trading.market.reading import read_csv
from trading.market.summary import Bars

pytestmark = [pytest.mark.systemd, pytest.mark.slow]

HOURLY = REPO / "tests" / "data" / "asx-intraday" / "CBA.AX.1h.csv"
INDEX_SCALE = 60.0


def last_sessions(bars, sessions: int):
    days = sorted({d[:10] for d in bars.dates})[-sessions:]
    first = next(i for i, d in enumerate(bars.dates) if d[:10] >= days[0])
    return bars[first:]


def test_the_monolith_runs_unchanged_on_hourly_bars_through_the_installed_services(installed):
    sd: UserManager = installed
    conf, env = configure(sd, f'predictor = "{MOMENTUM}"\npredictor_interval = "1h"\n'
                          'symbols = ["CBA"]\nnews_source = "sample"\n',
                          {"momentum.py": EXAMPLE}, stop=("prediction", "market-data", "sentiment"))
    folder = sd.home / "hourly"
    folder.mkdir(exist_ok=True)
    shutil.copy(HOURLY, folder / "CBA.AX.1h.csv")
    frame = pd.read_csv(HOURLY, index_col="Datetime")
    for c in ("Open", "High", "Low", "Close"):
        frame[c] = frame[c] * INDEX_SCALE
    frame.to_csv(folder / "^AXJO.1h.csv")

    trading = str(sd.home / ".local/bin/trading")
    out = sd.run(trading, "predict", "--source", f"csv:{folder}", "--json", env=env,
                 timeout=120)
    assert "in-process" not in out.stderr, out.stderr
    body = json.loads(out.stdout)
    assert body["interval"] == "1h" and not body["errors"], body["errors"]
    assert body["predictor"]["name"] == MOMENTUM and body["predictor"]["form"] == "monolith"
    assert list(body["results"]) == ["CBA.AX"]
    assert sd.main_pid("prediction") and sd.main_pid("market-data")  # socket-activated

    call = json.loads(sd.run(trading, "call", "prediction", "get_prediction", "symbol=CBA",
                             "inputs=true", env=env).stdout)
    assert call["stream"]["interval"] == "1h" and call["interval"] == "1h"
    assert call["predictor"]["name"] == MOMENTUM
    # The file's last bar is the early close's auction bar of 31 December 2024.
    assert call["bar"] == "2024-12-31T14:00:00+11:00"
    market = call["inputs"]["market"]
    assert market["interval"] == "1h" and market["in_progress"] is None
    # Its tech_data: the summary of the file's last WINDOW_SESSIONS sessions of hourly bars.
    sessions = intraday_summary.WINDOW_SESSIONS["1h"]
    bars = last_sessions(read_csv(HOURLY, interval="1h")[0], sessions)
    index = Bars(bars.dates, bars.open * INDEX_SCALE, bars.high * INDEX_SCALE,
                 bars.low * INDEX_SCALE, bars.close * INDEX_SCALE, bars.volume)
    expected = intraday_summary.summarize("CBA.AX", bars, index, "1h", config.load(
        {"TRADING_CONFIG": str(conf)}, install=None))
    assert market["technical"] == expected["technical"]
    assert market["volume"] == expected["volume"]
    assert market["window"] == {"sessions": sessions, "bars": len(bars),
                                "first": bars.dates[0], "last": bars.dates[-1]}
    assert market["market_context"]["fallback"] is False

    # No new completed bar since that call: the next run says so and stores nothing.
    again = sd.run(trading, "predict", "--source", f"csv:{folder}", env=env, timeout=120)
    assert "no new completed 1h bar" in again.stdout, again.stdout + again.stderr
    history = json.loads(sd.run(trading, "history", "--json", "--all", env=env).stdout)
    assert len([p for p in history if p["stream"]["interval"] == "1h"]) == 1
