"""The dashboard's symbol page on an intraday predictor interval (issue 29), in a real browser
(Debian's headless Chromium through Playwright, as tests/test_web_browser.py): with
``predictor_interval = "1h"`` the chart draws the hourly series the calls were made from, each
call marked on its bar, with no console error.

The store is filled by ``trading predict --interval``-style calls of the built-in rules from a
folder of hourly files in yfinance's intraday layout (tests/data/asx-intraday, and an index
beside it); the server is ``python -m trading.web`` on that store.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import REPO, wait_for
from test_web_browser import CHROMIUM, browser, dashboard, visit  # noqa: F401 - fixture

HOURLY = REPO / "tests" / "data" / "asx-intraday" / "CBA.AX.1h.csv"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM) and os.environ.get("CI", "").lower() not in ("1", "true"),
        reason="no chromium (./install.sh --dev installs it)"),
]


@pytest.fixture
def hourly_server(tmp_path):
    folder = tmp_path / "hourly"
    folder.mkdir()
    shutil.copy(HOURLY, folder / "CBA.AX.1h.csv")
    frame = pd.read_csv(HOURLY, index_col="Datetime")
    for c in ("Open", "High", "Low", "Close"):
        frame[c] = frame[c] * 60
    frame.to_csv(folder / "^AXJO.1h.csv")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADING_")}
    env.update(TRADING_STATE_DIR=str(tmp_path / "state"), TRADING_CACHE_DIR=str(tmp_path / "cache"),
               TRADING_RUNTIME_DIR=str(tmp_path / "run"), TRADING_SOURCE=f"csv:{folder}",
               TRADING_NEWS_SOURCE="sample", TRADING_PREDICTOR_INTERVAL="1h",
               TRADING_CONFIG=str(tmp_path / "none.toml"))
    # Two calls: one when the file's 20 December was the last complete session, one at its end.
    for now in ("2024-12-21T09:00", "2025-01-06T09:00"):
        made = subprocess.run([sys.executable, "-m", "trading.cli.main", "predict", "CBA",
                               "--json"], env={**env, "TRADING_NOW": now},
                              capture_output=True, text=True, timeout=120)
        assert made.returncode == 0, made.stdout + made.stderr
    with dashboard({**env, "TRADING_NOW": "2025-01-06T09:00"}) as url:
        yield url


def test_the_symbol_page_draws_the_hourly_bars_and_marks_each_call_on_its_bar(
        hourly_server, browser, tmp_path):  # noqa: F811 - the imported fixture
    page, problems = visit(browser, hourly_server + "/symbol/CBA.AX")
    try:
        page.wait_for_selector("#chart[data-drawn]", timeout=15000)
        api = page.get_attribute("#chart", "data-api")
        data = page.evaluate("u => fetch(u).then(r => r.json())", api)
        chart = data["chart"]
        assert chart["interval"] == "1h"
        times = [b["time"] for b in chart["bars"]]
        assert times[-1] == "2024-12-31T14:00:00+11:00"  # the early close's auction bar
        assert int(page.get_attribute("#chart", "data-drawn")) == len(times)
        assert [m["time"] for m in chart["markers"]] == ["2024-12-20T16:00:00+11:00",
                                                         "2024-12-31T14:00:00+11:00"]
        assert page.get_attribute("#chart", "data-markers") == "2"
        assert "1h bars (the predictor's interval)" in page.locator("#chart-status").inner_text()
        cells = page.locator("table.history td.src").all_inner_texts()
        assert cells == ["live · rules · csv · 1h"] * 2, cells
        page.screenshot(path=str(Path(tmp_path) / "symbol-1h.png"))
        assert problems == []
    finally:
        page.close()
