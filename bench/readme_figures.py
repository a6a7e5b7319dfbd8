"""Keep the documented deterministic figures true: rerun the quoted commands and compare.

    .venv/bin/python bench/readme_figures.py --check   # exit 1 listing each figure that drifted
    .venv/bin/python bench/readme_figures.py --write   # rewrite the marked blocks with today's

Each block of figures sits between ``<!-- figures:NAME -->`` and ``<!-- /figures -->`` (HTML
comments: GitHub does not show them) in one of :data:`DOCS` (README.md, docs/benchmarks.md,
docs/reliability.md); the script scans them all, and each NAME must appear exactly once. For
each NAME it runs the command the block quotes, in-process (typer's CliRunner,
``--in-process``), on the real bars in tests/data/asx-daily, with private state, cache,
runtime and config paths in a temporary directory and no network, and renders the block from
the command's ``--json`` answer. ``--check`` compares that with the file number by number;
``--write`` rewrites the blocks in whichever file holds them.

Covered: the backtest paragraph (``trading backtest``) and the calibration scorecard
(``trading replay`` then ``trading report``), both in docs/benchmarks.md. Left out on purpose:
the timing benchmarks (bench_runtime, bench_cli, bench_web and the other bench/ scripts),
whose figures differ on every run and every machine, so they cannot be checked, only
re-measured; docs/benchmarks.md names each one's command beside its figures. Also left out:
``trading train``'s tables and the month query's figures, which quote their commands but are
not marked blocks.
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
# The files that may hold marked blocks, relative to ROOT (a missing one holds none).
DOCS = ("README.md", "docs/benchmarks.md", "docs/reliability.md")
DATA = "tests/data/asx-daily"  # relative, as the docs quote it; commands run from ROOT
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


def directional(render: Callable[[], str]) -> Callable[[], str]:
    """Render with the rules' BUY and SELL made (``directional_calls``): the figures are about
    the rules' own calls, which the shipped default withholds (docs/choosing-the-predictor.md)."""
    def run() -> str:
        old = os.environ.get("TRADING_DIRECTIONAL_CALLS")
        os.environ["TRADING_DIRECTIONAL_CALLS"] = "true"
        try:
            return render()
        finally:
            if old is None:
                os.environ.pop("TRADING_DIRECTIONAL_CALLS", None)
            else:
                os.environ["TRADING_DIRECTIONAL_CALLS"] = old
    return run


def pct(x: float, places: int = 2) -> str:
    """A percentage with its sign, as the docs write returns: +0.04%."""
    return f"{x:+.{places}f}%"


def backtest() -> str:
    r = trading("backtest", "--source", f"csv:{DATA}")
    pa, same = r["per_action"], r["total_return_pct_on_index_sessions"]
    return f"""\
Backtest (`TRADING_DIRECTIONAL_CALLS=true trading backtest --source csv:{DATA}`: the rules'
own BUY/SELL calls, which the default withholds; add `--chart /tmp/bt.png` for the
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

    def row(horizon: str, label: str, f: dict[str, Any]) -> str:
        return (f"| {horizon}     | {label:<38} | {f['n']:,} | {f['ece']:.3f} | "
                f"{f['brier']:.4f} | {f['brier_climatology']:.4f}      | "
                f"{f['brier_skill']:+.3f} |")

    def rows(horizon: str, p: dict[str, Any]) -> str:
        # The rules' own strength read as a probability, over every row (calibrated or not),
        # then the calibrated probability over the rows that had a fit.
        raw = p.get("raw_strength_all") or p["raw_strength"]
        return "\n".join([row(horizon, "rules strength, uncalibrated", raw),
                          row(horizon, "calibrated probability, walk-forward",
                              p["calibrated"])])

    def rate(s: dict[str, Any]) -> str:
        return f"{s['hit_rate']:.1%}".replace("%", " %")

    def ci(s: dict[str, Any]) -> str:
        return f"{s['ci95'][0]:.1%}-{s['ci95'][1]:.1%}".replace("%", "") + " %"

    p1, p5 = one["probability"], five["probability"]
    calls, hold = one["by_action"]["BUY/SELL"], one["by_action"]["HOLD"]
    base = one["baselines"]
    return f"""\
On the seven symbols' real bars, the rules' own calls (`TRADING_DIRECTIONAL_CALLS=true trading
replay {DATA}`; {one['n']:,} and {five['n']:,} scored predictions after 1 and 5 sessions):

| after | stated number                          | n     | ECE   | Brier  | climatology | skill  |
|-------|----------------------------------------|-------|-------|--------|-------------|--------|
{rows('1', p1)}
{rows('5', p5)}

Climatology is the base rate of being right over the evaluated rows, known only in hindsight;
against the walk-forward base rate (what was known before each prediction) the calibrated
skill is {p1['walk_forward_climatology']['brier_skill']:+.3f} and \
{p5['walk_forward_climatology']['brier_skill']:+.3f}. The first {p1['uncalibrated']} / \
{p5['uncalibrated']} predictions had nothing to calibrate on and
are left out of the calibrated rows. After 1 session the BUY/SELL calls were right {rate(calls)}
(95 % {ci(calls)}, n {calls['n']}) against {rate(base['always_buy'])} for always BUY; \
HOLD {rate(hold)} ({ci(hold)}) against
{rate(base['always_hold'])} for always HOLD: the rules have no demonstrated edge, and the \
calibrated probability
says so (it sits near the base rate).
"""


RENDER: dict[str, Callable[[], str]] = {"backtest": directional(backtest),
                                        "scorecard": directional(scorecard)}


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


def drift(name: str, where: str, quoted: str, today: str) -> list[str]:
    """Each number that changed, or the wording's diff where more than numbers changed."""
    if NUMBER.sub("#", quoted) != NUMBER.sub("#", today):
        diff = difflib.unified_diff(quoted.splitlines(), today.splitlines(), where, "today",
                                    lineterm="", n=0)
        return [f"{name} ({where}): the wording differs (--write rewrites it):", *diff]
    return [f"{name}: {where} says {a}, the command gives {b}  ({line.strip()[:60]})"
            for line, new in zip(quoted.splitlines(), today.splitlines())
            for a, b in zip(NUMBER.findall(line), NUMBER.findall(new)) if a != b]


def blocks() -> tuple[dict[str, str], dict[str, str], list[str]]:
    """The text of each file in :data:`DOCS` that exists, the file holding each block, and
    a line per block named twice."""
    texts = {doc: (ROOT / doc).read_text() for doc in DOCS if (ROOT / doc).exists()}
    where: dict[str, str] = {}
    twice = []
    for doc, text in texts.items():
        for m in BLOCK.finditer(text):
            if m["name"] in where:
                twice.append(f"readme_figures: the block {m['name']} is in both "
                             f"{where[m['name']]} and {doc}")
            where.setdefault(m["name"], doc)
    return texts, where, twice


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="exit 1 if a figure drifted")
    mode.add_argument("--write", action="store_true", help="rewrite the marked blocks")
    args = parser.parse_args(argv)

    os.chdir(ROOT)
    texts, where, twice = blocks()
    if twice:
        print("\n".join(twice))
        return 1
    if missing := set(RENDER) - set(where):
        print(f"readme_figures: no block for {', '.join(sorted(missing))} in any of "
              f"{', '.join(DOCS)}")
        return 1
    if unknown := set(where) - set(RENDER):
        print(f"readme_figures: no command for the block(s) {', '.join(sorted(unknown))}")
        return 1
    with isolated():
        today = {name: render() for name, render in RENDER.items()}

    if args.write:
        for doc in sorted(set(where.values())):
            text = texts[doc]
            new = BLOCK.sub(lambda m: m[1] + today[m["name"]] + m[4], text)
            (ROOT / doc).write_text(new)
            print(f"{doc}: " + ("figures rewritten" if new != text else "already up to date"))
        return 0
    quoted = {m["name"]: m["body"] for doc in set(where.values())
              for m in BLOCK.finditer(texts[doc])}
    problems = [line for name in RENDER
                for line in drift(name, where[name], quoted[name], today[name])]
    print("\n".join(problems) if problems else "figures up to date: " + ", ".join(
        f"{name} ({where[name]})" for name in RENDER))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
