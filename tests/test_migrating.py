"""docs/migrating.md's recipe, run as written: the commands of its ``<!-- recipe -->`` block,
in-process (``typer.testing.CliRunner``), from the checkout's top folder, on tests/data.

``~/.config/trading`` in the recipe is the configuration folder (the test's own here);
``NAME=value`` before a command is that command's environment; ``$PWD`` is the checkout. Each
line the page shows under "What it prints" must be printed by the recipe, and the store must
hold what the page says: both predictors' replays, and the job's live run.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
from pathlib import Path

from typer.testing import CliRunner

from trading import config
from trading.cli.main import app
from trading.runtime.store import Store

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "migrating.md"


def recipe() -> list[str]:
    text = PAGE.read_text()
    block = text.split("<!-- recipe: run by tests/test_migrating.py -->", 1)[1]
    body = block.split("```sh\n", 1)[1].split("```", 1)[0]
    return [ln for ln in body.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def shown() -> list[str]:
    """The lines under "What it prints", without the ``...`` elisions."""
    text = PAGE.read_text().split("What it prints", 1)[1].split("\n\n", 1)[1]
    lines = []
    for ln in text.splitlines():
        if not ln.startswith("    "):
            break
        if ln.strip() != "...":
            lines.append(ln.strip())
    return lines


def squash(s: str) -> str:
    return re.sub(r"\s+", " ", s).strip()


def test_the_migration_recipe_runs_as_written(monkeypatch):
    conf_dir = Path(os.environ["TRADING_CONFIG"]).parent
    monkeypatch.delenv("TRADING_DIRECTIONAL_CALLS")  # the shipped defaults, as a user has them
    config.reset()
    monkeypatch.chdir(ROOT)
    out = []
    for line in recipe():
        words = shlex.split(os.path.expandvars(line.replace("$PWD", str(ROOT))))
        env = {}
        while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
            key, _, value = words.pop(0).partition("=")
            env[key] = value
        words = [w.replace("~/.config/trading", str(conf_dir)) for w in words]
        if words[0] == "mkdir":
            Path(words[-1]).mkdir(parents=True, exist_ok=True)
            continue
        if words[0] == "cp":
            shutil.copy(words[1], words[2])
            continue
        assert words[0] == "trading", line
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        config.reset()
        r = CliRunner().invoke(app, words[1:], env={"COLUMNS": "200"})
        for key in env:
            monkeypatch.delenv(key)
        config.reset()
        assert r.exit_code == 0, (line, r.output)
        out.append(r.output)
    assert len(out) == 3
    printed = [squash(ln) for ln in "\n".join(out).splitlines()]
    for want in shown():
        want = squash(want)
        if want.endswith("..."):
            assert any(p.startswith(want[:-3].strip()) for p in printed), (want, out)
        else:
            assert want in printed, (want, out)
    st = Store(config.get().db_path)
    by = {(r["origin"], r["predictor"]): r["n"] for r in st.query(
        "SELECT origin, predictor, count(*) AS n FROM predictions GROUP BY 1, 2")}
    assert by == {("replay", "momentum:EnhancedMarketAwarePredictor"): 91,
                  ("replay", "trading.signals.rules:predict"): 91,
                  ("live", "momentum:EnhancedMarketAwarePredictor"): 7}
    # The job's run is the alert stream's (and its digest's); the replays are not.
    runs = st.query("SELECT kind, predictor FROM alert_runs")
    assert [tuple(r) for r in runs] == [("job", "momentum:EnhancedMarketAwarePredictor")]
