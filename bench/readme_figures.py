"""Keep the README's deterministic figures true: rerun the quoted commands and compare.

    .venv/bin/python bench/readme_figures.py --check   # exit 1 listing each figure that drifted
    .venv/bin/python bench/readme_figures.py --write   # rewrite the marked blocks with today's

Each block of figures in README.md sits between ``<!-- figures:NAME -->`` and
``<!-- /figures -->`` (HTML comments: GitHub does not show them). For each NAME this script
runs the command the block quotes, in-process (typer's CliRunner, ``--in-process``), on the
real bars in tests/data/asx-daily, with private state, cache, runtime and config paths in a
temporary directory and no network, and renders the block from the command's ``--json``
answer. ``--check`` compares that with the README number by number.

Covered: the backtest paragraph (``trading backtest``) and the calibration scorecard
(``trading replay`` then ``trading report``). Left out on purpose: the timing benchmarks
(bench_runtime, bench_cli, bench_web and the other bench/ scripts), whose figures differ on
every run and every machine, so they cannot be checked, only re-measured; each of those
README sections names its command beside its figures. Also left out: the "before" rows of the
scorecard (main before issue 16, kept as written) and ``trading train``'s table (the
training section quotes ../shared data, not in this repository).
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DATA = "tests/data/asx-daily"  # relative, as the README quotes it; commands run from ROOT
BLOCK = re.compile(r"(<!-- figures:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /figures -->)",
                   re.S)
NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?")


def trading(*args: str) -> Any:
    """Run ``trading ARGS --json`` in this process and return its JSON answer."""
    from typer.testing import CliRunner

    from trading.cli.main import app

    result = CliRunner().invoke(app, ["--in-process", *args, "--json"])
    if result.exit_code != 0:
        raise SystemExit(f"readme_figures: trading {' '.join(args)} failed "
                         f"(exit {result.exit_code}): {result.output.strip()}")
    return json.loads(result.stdout)


def pct(x: float, places: int = 2) -> str:
    """A percentage with its sign, as the README writes returns: +0.04%."""
    return f"{x:+.{places}f}%"


def backtest() -> str:
    r = trading("backtest", "--source", f"csv:{DATA}")
    pa, same = r["per_action"], r["total_return_pct_on_index_sessions"]
    return f"""\
Backtest (`trading backtest --source csv:{DATA}`, add `--chart /tmp/bt.png` for the
curves; {r['start']}..{r['end']}, {r['sessions']} sessions, rules without a model, \
{r['cost_bps']:g} bps per entry and per exit;
a call is judged close to close, and traded from the next open to the open after, since it
needs a close that settles after the market has shut):
{r['calls']} BUY/SELL calls in {r['signals']:,} symbol-days, hit rate {r['hit_rate']:.3f}; \
mean next-day return after BUY
{pct(pa['BUY']['mean_forward_pct'])}, HOLD {pct(pa['HOLD']['mean_forward_pct'])}, \
SELL {pct(pa['SELL']['mean_forward_pct'])}. Long on BUY returned \
{pct(r['strategy']['total_return_pct'])} (max drawdown
{r['strategy']['max_drawdown_pct']:.2f}%, long {r['exposure']:.0%} of the time) against \
{pct(r['buy_and_hold']['total_return_pct'], 1)} for equal-weight buy and hold (max drawdown
{r['buy_and_hold']['max_drawdown_pct']:.1f}%). The index has data on only \
{r['index']['sessions_covered']} of the {r['sessions']} sessions: on those, the index
{pct(same['index'])}, buy and hold {pct(same['buy_and_hold'])}, the strategy \
{pct(same['strategy'])}.
"""


def scorecard() -> str:
    trading("replay", DATA)
    h = trading("report", "--origin", "replay")["horizons"]
    one, five = h["1"], h["5"]

    def after(horizon: str, p: dict[str, Any]) -> str:
        c = p["calibrated"]
        return (f"| {horizon}     | after: calibrated, walk-forward       | {c['n']:,} | "
                f"{c['ece']:.3f} | {c['brier']:.4f} | {c['brier_climatology']:.4f}      | "
                f"{c['brier_skill']:+.3f} |")

    def rate(s: dict[str, Any]) -> str:
        return f"{s['hit_rate']:.1%}".replace("%", " %")

    def ci(s: dict[str, Any]) -> str:
        return f"{s['ci95'][0]:.1%}-{s['ci95'][1]:.1%}".replace("%", "") + " %"

    p1, p5 = one["probability"], five["probability"]
    calls, hold = one["by_action"]["BUY/SELL"], one["by_action"]["HOLD"]
    base = one["baselines"]
    # The "before" rows are main's rules confidence before issue 16: history, kept as written.
    return f"""\
On the seven symbols' real bars ({one['n']:,} and {five['n']:,} scored predictions after 1 \
and 5 sessions):

| after | stated number                         | n     | ECE   | Brier  | climatology | skill  |
|-------|---------------------------------------|-------|-------|--------|-------------|--------|
| 1     | before: rules confidence (main)       | 3,304 | 0.094 | 0.2417 | 0.2294      | -0.054 |
{after('1', p1)}
| 5     | before: rules confidence (main)       | 3,276 | 0.113 | 0.2379 | 0.2214      | -0.074 |
{after('5', p5)}

Climatology is the base rate of being right over the evaluated rows, known only in hindsight;
against the walk-forward base rate (what was known before each prediction) the skill is
{p1['walk_forward_climatology']['brier_skill']:+.3f} and \
{p5['walk_forward_climatology']['brier_skill']:+.3f}. The first {p1['uncalibrated']} / \
{p5['uncalibrated']} predictions had nothing to calibrate on and are left out
of the "after" rows (the raw strength over all rows: ECE \
{p1['raw_strength_all']['ece']:.3f} / {p5['raw_strength_all']['ece']:.3f}). After 1 session
the BUY/SELL calls were right {rate(calls)} (95 % {ci(calls)}, n {calls['n']}) against \
{rate(base['always_buy'])} for always BUY;
HOLD {rate(hold)} ({ci(hold)}) against {rate(base['always_hold'])} for always HOLD: \
the rules have no demonstrated edge,
and the calibrated probability now says so (it sits near the base rate).
"""


RENDER: dict[str, Callable[[], str]] = {"backtest": backtest, "scorecard": scorecard}


def isolated() -> tempfile.TemporaryDirectory:
    """Private state, cache, runtime and config paths: no user's store or settings leak in."""
    tmp = tempfile.TemporaryDirectory(prefix="readme-figures-")
    for key in [k for k in os.environ if k.startswith("TRADING_")]:
        del os.environ[key]
    for key in ("STATE", "CACHE", "RUNTIME"):
        os.environ[f"TRADING_{key}_DIR"] = f"{tmp.name}/{key.lower()}"
    os.environ["TRADING_CONFIG"] = f"{tmp.name}/config.toml"  # absent: the defaults
    from trading import config

    config.reset()
    return tmp


def drift(name: str, quoted: str, today: str) -> list[str]:
    """Each number that changed, or the wording's diff where more than numbers changed."""
    if NUMBER.sub("#", quoted) != NUMBER.sub("#", today):
        diff = difflib.unified_diff(quoted.splitlines(), today.splitlines(), "README.md",
                                    "today", lineterm="", n=0)
        return [f"{name}: the wording differs (--write rewrites it):", *diff]
    return [f"{name}: README says {a}, the command gives {b}  ({line.strip()[:60]})"
            for line, new in zip(quoted.splitlines(), today.splitlines())
            for a, b in zip(NUMBER.findall(line), NUMBER.findall(new)) if a != b]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="exit 1 if a figure drifted")
    mode.add_argument("--write", action="store_true", help="rewrite the marked blocks")
    args = parser.parse_args(argv)

    os.chdir(ROOT)
    text = README.read_text()
    blocks = {m["name"]: m for m in BLOCK.finditer(text)}
    if missing := set(RENDER) - set(blocks):
        print(f"readme_figures: README.md has no block for {', '.join(sorted(missing))}")
        return 1
    if unknown := set(blocks) - set(RENDER):
        print(f"readme_figures: no command for the block(s) {', '.join(sorted(unknown))}")
        return 1
    with isolated():
        today = {name: render() for name, render in RENDER.items()}

    if args.write:
        new = BLOCK.sub(lambda m: m[1] + today[m["name"]] + m[4], text)
        README.write_text(new)
        print("README.md: " + ("figures rewritten" if new != text else "already up to date"))
        return 0
    problems = [line for name in RENDER for line in drift(name, blocks[name]["body"],
                                                          today[name])]
    print("\n".join(problems) if problems else f"README.md figures up to date: "
          f"{', '.join(RENDER)}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
