"""The finance-aware headline scorer: VADER's general lexicon under a finance overlay.

A general lexicon alone reads market headlines wrongly: VADER scores "CBA shares slump after
profit falls short of forecasts" at +0.63 because "shares" and "profit" are positive words in
social media and it has never heard of "slump" or "falls short". So a headline is scored in
three layers, the first that knows a word wins:

1. finance phrases (``data/finance_phrases.txt``): "beats estimates", "cuts guidance", "swings
   to a loss", "record profit", "higher costs" ... matched as regular expressions; their words
   are then not scored again one by one;
2. finance words (``data/finance_lexicon.txt``): market verbs (slump, surge, tumble), ratings
   (upgrade, downgrade) and a list of words that carry no direction in a market headline
   ("shares", "profit", "interest") and are neutralised;
3. the Loughran-McDonald positive and negative lists (``data/lm_*.txt``), then VADER's lexicon
   at a reduced weight.

On top: negation ("not", "fails to", "no" within three words flips and damps a valence, as
VADER does), intensity ("sharply", "heavily" boost; "slightly", "modestly" damp the nearest
valence) and clause weighting (after "but" counts more, after "despite" less). The sum is
squashed to -1..1 as VADER's compound is, so the two read on the same scale.

Everything loads lazily on the first score, under a lock: importing this module or creating a
:class:`Scorer` costs nothing, which keeps the sentiment service's cold start small.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from typing import Any

logger = logging.getLogger(__name__)

#: Bump when a lexicon or the rules change: cached headline scores carry it and are rescored.
VERSION = "fin-2026.11.1"

#: |score| below this is neutral (VADER's own convention is 0.05; headlines carry more
#: incidental wording than tweets, so the band is a little wider).
NEUTRAL_BAND = 0.1

LM_WEIGHT = 1.2        # valence of a Loughran-McDonald word (sign from its list)
VADER_WEIGHT = 0.5     # VADER's valences are for social media: they count half here
NEGATION_SCALAR = -0.74  # VADER's N_SCALAR: "not good" is less bad than "bad"
ALPHA = 15.0           # VADER's normalisation constant
MAX_TEXT = 2000        # characters scored per text; a headline is far shorter

_NEGATORS = frozenset("""
not no never none nor neither without cannot hardly barely lack lacks lacking
isn't aren't wasn't weren't don't doesn't didn't won't wouldn't can't couldn't shouldn't
hasn't haven't hadn't fails fail failed failing unable
""".split())
_BOOSTERS = {w: 1.35 for w in """
sharply strongly significantly heavily substantially steeply massively hugely deeply
dramatically sharp steep massive huge heavy significant big bigger biggest further
""".split()}
_BOOSTERS.update({w: 0.6 for w in """
slightly marginally modestly somewhat mildly partly little edges edged edging slight modest
mild small smaller
""".split()})
_BUT = frozenset(["but", "however", "yet", "although", "though"])
_DESPITE = frozenset(["despite", "notwithstanding"])

_TOKEN = re.compile(r"[a-z0-9$][a-z0-9'$.%-]*[a-z0-9%]|[a-z0-9]")
_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"',
                         "\u2013": "-", "\u2014": "-"})


def _data(name: str) -> str:
    from importlib import resources

    return resources.files("trading.data").joinpath(name).read_text(encoding="utf-8")


def _lines(text: str):
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            yield line


class Scorer:
    """Scores texts in -1..1; thread-safe; loads its lexicons on the first call."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded = False
        self._words: dict[str, float] = {}
        self._phrases: re.Pattern[str] | None = None
        self._phrase_valence: dict[str, float] = {}

    @property
    def loaded(self) -> bool:
        return self._loaded

    # -- loading ---------------------------------------------------------------------------
    def load(self) -> None:
        """Read the lexicons now (otherwise the first score does)."""
        with self._lock:
            if self._loaded:
                return
            from importlib import resources

            words: dict[str, float] = {}
            # Lowest precedence first; later layers overwrite.
            for line in _lines(resources.files("vaderSentiment").joinpath(
                    "vader_lexicon.txt").read_text(encoding="utf-8")):
                parts = line.split("\t")
                if len(parts) >= 2:
                    try:
                        words[parts[0]] = float(parts[1]) * VADER_WEIGHT
                    except ValueError:
                        continue
            for name, sign in (("lm_negative.txt", -1.0), ("lm_positive.txt", 1.0)):
                for word in _lines(_data(name)):
                    words[word] = sign * LM_WEIGHT
            for line in _lines(_data("finance_lexicon.txt")):
                valence, *group = line.split()
                for word in group:
                    words[word] = float(valence)
            patterns = []
            valences = {}
            for i, line in enumerate(_lines(_data("finance_phrases.txt"))):
                valence, pattern = line.split(" ", 1)
                re.compile(pattern)  # a bad line fails here, naming itself in the traceback
                patterns.append(rf"(?P<p{i}>{pattern})")
                valences[f"p{i}"] = float(valence)
            # The word-start test is outside the alternation: mid-word positions fail on one
            # look-behind instead of on every phrase (most of the scoring time otherwise).
            self._phrases = re.compile(rf"(?<![\w'-])(?:{'|'.join(patterns)})(?![\w-])")
            self._phrase_valence = valences
            self._words = words
            self._loaded = True
            logger.debug("lexicons loaded: %d words, %d phrases", len(words), len(valences))

    # -- scoring ---------------------------------------------------------------------------
    def score(self, text: str) -> float:
        """One text's score in -1..1 (0 for a text with no scored words)."""
        return self.explain(text)["score"]

    def score_many(self, texts: list[str]) -> list[float]:
        if not self._loaded:
            self.load()
        return [self.explain(t)["score"] for t in texts]

    def explain(self, text: str) -> dict[str, Any]:
        """The score and the scored items (phrase or word, valence after the rules)."""
        if not self._loaded:
            self.load()
        s = text[:MAX_TEXT].translate(_QUOTES).lower()
        # Tokens in order; a phrase is one token carrying its valence.
        tokens: list[tuple[str, float | None]] = []
        spans = []
        for m in self._phrases.finditer(s):
            spans.append((m.start(), m.end(), m.group(), self._phrase_valence[m.lastgroup]))
        spans.sort()
        pos = 0
        words = self._words
        for start, end, phrase, valence in spans + [(len(s), len(s), None, 0.0)]:
            for m in _TOKEN.finditer(s, pos, start):
                w = m.group().strip(".'$")
                tokens.append((w, words.get(w)))
            if phrase is not None:
                tokens.append((phrase, valence))
            pos = end
        items = []
        weight = 1.0
        for i, (word, valence) in enumerate(tokens):
            if word in _BUT:
                for item in items:
                    item[1] *= 0.5
                weight = 1.5
                continue
            if word in _DESPITE:
                weight = 0.4
                continue
            if not valence or word in _BOOSTERS:
                continue
            v = valence
            # Negation: any negator among the three tokens before flips and damps.
            if any(t[0] in _NEGATORS for t in tokens[max(0, i - 3):i]):
                v *= NEGATION_SCALAR
            # Intensity: the nearest booster/dampener within two tokens (before, then after).
            for j in (i - 1, i - 2, i + 1, i + 2):
                if 0 <= j < len(tokens) and tokens[j][0] in _BOOSTERS:
                    v *= _BOOSTERS[tokens[j][0]]
                    break
            items.append([word, v * weight])
        total = sum(v for _, v in items)
        score = total / math.sqrt(total * total + ALPHA) if total else 0.0
        return {"score": round(max(-1.0, min(1.0, score)), 4),
                "items": [(w, round(v, 3)) for w, v in items]}


def label(score: float) -> str:
    """positive, negative or neutral, by :data:`NEUTRAL_BAND`."""
    if score >= NEUTRAL_BAND:
        return "positive"
    if score <= -NEUTRAL_BAND:
        return "negative"
    return "neutral"


_default: Scorer | None = None
_default_lock = threading.Lock()


def default_scorer() -> Scorer:
    """The process's scorer (lexicons shared by every request)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Scorer()
        return _default


def score_texts(texts: list[str]) -> list[float]:
    return default_scorer().score_many(texts)
