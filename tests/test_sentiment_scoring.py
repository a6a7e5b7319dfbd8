"""The finance-aware scorer: accuracy on the labelled headlines, the rules, lazy loading."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trading.news.scoring import Scorer, label

DATA = Path(__file__).parent / "data"

# Achieved when the floors were set: 0.996 on the labelled set (the lexicon was tuned with it
# in view) and 0.975 on the held-out set (120, never tuned on); plain VADER 0.671 / 0.625.
# The floors leave room for lexicon edits.
ACCURACY_FLOOR = 0.90
HELDOUT_FLOOR = 0.85
MARGIN_OVER_VADER = 0.15


def _rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / name).read_text().splitlines() if line.strip()]


def _vader_label(compound: float) -> str:
    # VADER's documented convention: compound >= 0.05 positive, <= -0.05 negative.
    return "positive" if compound >= 0.05 else "negative" if compound <= -0.05 else "neutral"


@pytest.fixture(scope="module")
def scorer() -> Scorer:
    return Scorer()


def test_labelled_set_is_big_balanced_and_unique():
    rows = _rows("headlines_labelled.jsonl")
    counts = Counter(r["label"] for r in rows)
    assert len(rows) >= 200
    assert set(counts) == {"positive", "negative", "neutral"}
    assert max(counts.values()) - min(counts.values()) <= 5, counts
    assert len({r["text"].lower() for r in rows}) == len(rows), "duplicate headlines"


@pytest.mark.parametrize("name,floor", [("headlines_labelled.jsonl", ACCURACY_FLOOR),
                                        ("headlines_heldout.jsonl", HELDOUT_FLOOR)])
def test_accuracy_floor_and_beats_plain_vader(scorer, name, floor):
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    rows = _rows(name)
    vader = SentimentIntensityAnalyzer()
    ours = sum(label(scorer.score(r["text"])) == r["label"] for r in rows) / len(rows)
    plain = sum(_vader_label(vader.polarity_scores(r["text"])["compound"]) == r["label"]
                for r in rows) / len(rows)
    print(f"{name}: finance-aware {ours:.3f}, plain VADER {plain:.3f} ({len(rows)} headlines)")
    assert ours >= floor
    assert ours - plain >= MARGIN_OVER_VADER


def test_the_headline_vader_gets_wrong_is_negative(scorer):
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    text = "CBA shares slump after profit falls short of forecasts"
    assert SentimentIntensityAnalyzer().polarity_scores(text)["compound"] > 0  # the motivation
    assert label(scorer.score(text)) == "negative"


@pytest.mark.parametrize("text,expected", [
    ("Macquarie beats consensus estimates", "positive"),
    ("Macquarie misses consensus estimates", "negative"),
    ("Broker upgrades Telstra to buy", "positive"),
    ("Broker downgrades Telstra to sell", "negative"),
    ("Orica cuts full-year guidance", "negative"),
    ("Orica raises full-year guidance", "positive"),
    ("Lendlease books $500 million writedown", "negative"),
    ("Wesfarmers posts record profit", "positive"),
    ("Wesfarmers posts record loss", "negative"),
    ("Qantas cuts costs to protect margins", "positive"),
    ("Miner swings to a loss", "negative"),
    ("Miner swings to a profit", "positive"),
])
def test_finance_phrases(scorer, text, expected):
    assert label(scorer.score(text)) == expected, scorer.explain(text)


def test_negation_flips_and_damps(scorer):
    plain = scorer.score("Results impress investors")
    negated = scorer.score("Results do not impress investors")
    assert plain > 0 > negated
    assert abs(negated) < abs(plain)
    assert (scorer.score("Miner does not expect a writedown")
            > scorer.score("Miner expects a writedown"))


def test_intensity(scorer):
    base = scorer.score("Shares fall after results")
    assert scorer.score("Shares fall sharply after results") < base < 0
    assert base < scorer.score("Shares fall slightly after results") < 0


def test_but_weights_the_second_clause(scorer):
    assert scorer.score("Profit rises but outlook cut") < 0
    assert scorer.score("Outlook cut but profit rises strongly") > 0


def test_no_scored_words_is_zero_and_range(scorer):
    assert scorer.score("") == 0.0
    assert scorer.score("BHP releases quarterly report") == 0.0
    for text in ("surge soar rally jump record high " * 20, "plunge crash slump " * 20):
        assert -1.0 <= scorer.score(text) <= 1.0


def test_lexicons_load_lazily():
    code = ("import sys; import trading.news.scoring as s; sc = s.Scorer(); "
            "import trading.handlers.sentiment as h; h.SERVICE(); "
            "assert not sc.loaded; "
            "assert 'vaderSentiment' not in sys.modules, 'vader imported early'; "
            "sc.score('shares slump'); assert sc.loaded; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_handler_import_is_light():
    # Every import at the top of the handler is paid on each cold start.
    code = ("import sys, trading.handlers.sentiment; "
            "heavy = [m for m in ('pandas', 'numpy', 'yfinance', 'vaderSentiment', "
            "'trading.news.scoring', 'trading.news.headlines', 'trading.runtime.store') if m in sys.modules]; "
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


_SCORER = Scorer()


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_any_text_scores_in_range(text):
    assert -1.0 <= _SCORER.score(text) <= 1.0
