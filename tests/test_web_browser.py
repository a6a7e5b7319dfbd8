"""The dashboard in a real browser: Debian's headless Chromium driven by Playwright (the Python
package brings its own driver; no browser is ever downloaded), against the real server
(``python -m trading.web``) on a real store with predictions in it.

Each page: no console error (a CSP violation is one), the chart's canvas drawn on the symbol
page, the hostile headline shown as text and never run, and a screenshot kept under the
test's tmp directory (``TRADING_WEB_SCREENSHOTS=DIR`` keeps them there instead, which is how
docs/images was made).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import wait_for
from support import webstore
from trading import config

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ASX_DAILY = Path(__file__).parent / "data" / "asx-daily"
PHONE = {"width": 390, "height": 844}  # an iPhone 12-14's CSS pixels
PAGES = ["/", "/symbol/CBA.AX", "/history", "/accuracy", "/models", "/services", "/events"]

pytestmark = [
    pytest.mark.slow,  # a headless Chromium per test: seconds each
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM) and os.environ.get("CI", "").lower() not in ("1", "true"),
        reason="no chromium (./install.sh --dev installs it)"),
]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``python -m trading.web`` on a store filled with predictions (module-scoped: one
    server for every page)."""
    root = tmp_path_factory.mktemp("web")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADING_")}
    env.update(TRADING_STATE_DIR=str(root / "state"), TRADING_CACHE_DIR=str(root / "cache"),
               TRADING_RUNTIME_DIR=str(root / "run"), TRADING_SOURCE="sample",
               TRADING_NEWS_SOURCE="sample")
    cfg = config.load(env, path=root / "none.toml")
    webstore.fill(cfg)
    # A replay of another source: real CBA from CSV files (about A$160) beside the live
    # calls made from sample data (about A$15).
    replay = subprocess.run([sys.executable, "-m", "trading.cli.main", "replay", str(ASX_DAILY),
                             "--symbol", "CBA", "--start", "2025-10-01"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert replay.returncode == 0, replay.stdout + replay.stderr
    with dashboard(env) as url:
        _SERVER_DB[url] = cfg.db_path
        yield url


@contextlib.contextmanager
def dashboard(env: dict[str, str]):
    """``python -m trading.web`` on a free loopback port with ``env``: its URL once it
    listens; stopped after, with no traceback in its output."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "trading.web", "--listen",
                             f"127.0.0.1:{port}"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)

    def up() -> bool:
        import socket

        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            return False

    try:
        wait_for(up, 20, "the dashboard to listen")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
        assert "Traceback" not in out, out


@pytest.fixture
def browser():
    """One browser per test: Playwright's event loop starts an executor thread on first use,
    which must end with the test (conftest's _check_settled)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    keep = os.environ.get("TRADING_WEB_SCREENSHOTS")
    path = Path(keep) if keep else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


def visit(browser, url: str, viewport: dict | None = None):
    page = browser.new_page(viewport=viewport or {"width": 1280, "height": 900})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
            if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    page.goto(url, wait_until="networkidle")
    return page, problems


@pytest.mark.parametrize("path", PAGES)
def test_each_page_loads_clean_and_is_kept_as_a_screenshot(server, browser, shots, path):
    page, problems = visit(browser, server + path)
    try:
        if path.startswith("/symbol/"):
            page.wait_for_selector("#chart[data-drawn]", timeout=15000)
        name = "overview" if path == "/" else path.strip("/").replace("/", "-").replace(".", "-")
        page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
        assert problems == []
        assert page.title().endswith("trading")
        assert page.locator("table").count() or page.locator(".empty").count()
        # Every request stayed on this origin: nothing from the internet.
        assert page.evaluate("performance.getEntriesByType('resource')"
                             ".every(e => e.name.startsWith(location.origin))")
    finally:
        page.close()


def test_the_chart_draws_price_indicators_and_calls(server, browser):
    page, problems = visit(browser, server + "/symbol/CBA.AX")
    try:
        page.wait_for_selector("#chart[data-drawn]", timeout=15000)
        assert int(page.get_attribute("#chart", "data-drawn")) > 200
        # Three panes (price, RSI, MACD), each a canvas with pixels that are not background.
        painted = page.evaluate("""() => {
            const cs = [...document.querySelectorAll('#chart canvas')];
            return cs.filter(c => c.width > 100 && c.height > 50).map(c => {
                const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                let ink = 0;
                for (let i = 0; i < d.length; i += 4) {
                    if (d[i + 3] > 0 && (d[i] < 200 || d[i + 1] < 200 || d[i + 2] < 200)) ink++;
                }
                return ink;
            });
        }""")
        assert len(painted) >= 3 and sum(1 for n in painted if n > 500) >= 3, painted
        # Zoom: the mouse wheel changes the picture (the visible range narrows).
        box = page.locator("#chart").bounding_box()
        before = page.locator("#chart").screenshot()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + 150)
        page.mouse.wheel(0, -800)
        time.sleep(0.5)
        assert page.locator("#chart").screenshot() != before
        assert problems == []
    finally:
        page.close()


def test_the_hostile_headline_is_inert_text(server, browser):
    page, problems = visit(browser, server + "/symbol/CBA.AX")
    try:
        assert page.evaluate("window.__pwned") is None
        cell = page.locator("table.headlines td", has_text="window.__pwned = 1")
        assert cell.count() == 1 and "<script>" in cell.inner_text()
        assert page.locator("table.headlines a").count() == 0  # its javascript: URL is no link
        assert page.locator("main script").count() == 0
        assert problems == []
    finally:
        page.close()


def test_live_events_arrive_by_server_sent_events(server, browser):
    page, problems = visit(browser, server + "/events")
    try:
        # (Playwright's wait_for_function evaluates a string: the page's CSP forbids that.)
        page.locator("#live", has_text="Live").wait_for(timeout=10000)
        before = page.locator("#event-rows tr").count()
        _record_event(server)  # another process writes, as the prediction service would
        wait_for(lambda: page.locator("#event-rows tr").count() > before, 10,
                 "the event to arrive", interval=0.1)
        top = page.locator("#event-rows tr").first.inner_text()
        assert "WBC.AX <b>x</b>" in top and "BUY 0.81" in top  # hostile text stays text
        assert page.evaluate("window.__pwned") is None and problems == []
    finally:
        page.close()


_SERVER_DB: dict[str, Path] = {}


def _record_event(server: str) -> None:
    from trading.runtime.store import Store
    from trading.signals import events

    store = Store(_SERVER_DB[server])
    with store.transaction() as conn:
        events.append(conn, "prediction", {"symbol": "WBC.AX <b>x</b>", "action": "BUY",
                                           "confidence": 0.81})
    store.close()


@pytest.mark.parametrize("path", ["/", "/symbol/CBA.AX", "/symbol/CBA.AX?origin=replay",
                                  "/history", "/models", "/services", "/accuracy", "/events"])
def test_every_page_fits_a_phone(server, browser, shots, path):
    """At 390 px wide nothing is wider than the screen (wide tables scroll inside their box)."""
    page, problems = visit(browser, server + path, PHONE)
    try:
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"{path}: {width} px wide"
        assert problems == []
    finally:
        page.close()


def test_the_overview_reads_first_on_a_phone(server, browser, shots):
    """The overview at phone width: every symbol a card no wider than the screen, several on
    the first screen, each with its price and change on the day, its call, probability,
    predictor and reasons in words; the market said once at the top."""
    page, problems = visit(browser, server + "/", PHONE)
    try:
        page.screenshot(path=str(shots / "overview-phone.png"), full_page=True)
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        rows = page.locator("table.calls tbody tr")
        assert rows.count() == 3
        boxes = [rows.nth(i).bounding_box() for i in range(rows.count())]
        assert all(b["x"] >= 0 and b["x"] + b["width"] <= PHONE["width"] for b in boxes)
        on_first_screen = [b for b in boxes if b["y"] + b["height"] <= PHONE["height"]]
        assert len(on_first_screen) >= 2, boxes  # one symbol does not fill the screen
        assert page.locator("table.calls thead").is_hidden()
        first = rows.first.inner_text()
        for part in ("BUY", "rules", "RSI", "%"):
            assert part in first or part in rows.nth(1).inner_text(), (part, first)
        assert page.locator(".market").count() == 1
        assert "Showing live calls of rules from sample data" in page.locator(".stream").inner_text()
        # Every row's text fits its card: nothing clipped sideways.
        assert page.evaluate("[...document.querySelectorAll('table.calls td')]"
                             ".every(td => td.scrollWidth <= td.clientWidth + 1)")
        assert problems == []
    finally:
        page.close()


def test_a_symbol_page_after_a_replay_of_another_source(server, browser, shots):
    """After a replay of real CBA from CSV files, the symbol page draws one stream at a time:
    by default the live sample stream (sample candles, its one call marked), and the replay's
    stream, a link away, over the CSV's own candles with only the replay's calls marked."""
    page, problems = visit(browser, server + "/symbol/CBA.AX")
    try:
        page.wait_for_selector("#chart[data-drawn]", timeout=15000)
        assert page.get_attribute("#chart", "data-markers") == "1"
        assert "live calls of rules from sample data" in page.locator(".stream").inner_text()
        cells = page.locator("table.history td.src").all_inner_texts()
        assert cells and all(c.endswith("sample") and c.startswith("live") for c in cells)
        page.locator(".stream a", has_text="replay").click()
        page.wait_for_load_state("networkidle")
        page.wait_for_selector("#chart[data-drawn]", timeout=15000)
        page.screenshot(path=str(shots / "symbol-replay.png"))
        assert "origin=replay" in page.url
        assert "replayed calls of rules from CSV files" in page.locator(".stream").inner_text()
        api = page.get_attribute("#chart", "data-api")
        data = page.evaluate("u => fetch(u).then(r => r.json())", api)
        closes = [b["close"] for b in data["chart"]["bars"]]
        assert min(closes) > 100  # the CSV's real CBA, not sample's A$15
        replayed = {m["id"] for m in data["chart"]["markers"]}
        assert int(page.get_attribute("#chart", "data-markers")) == len(replayed) == 65
        ids = page.evaluate("u => fetch(u).then(r => r.json())",
                            "/api/history?symbol=CBA.AX&origin=replay&limit=1000")
        assert replayed <= {p["id"] for p in ids["predictions"]}
        cells = page.locator("table.history td.src").all_inner_texts()
        assert cells and all(c == "replay · rules · csv" for c in cells)
        assert problems == []
    finally:
        page.close()
