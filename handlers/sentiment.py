"""The sentiment service: news headlines per symbol, scored by a finance-aware scorer.

Methods: ``analyze_sentiment(symbol, source=None)``, ``analyze_bulk(symbols, source=None)``
(the prediction service asks for every symbol in one call) and ``score_text(texts)``. The
work is in :mod:`trading.news.headlines` (sources, cache, aggregate) and :mod:`trading.news.scoring`; both
are imported on the first request, and a request answered from the cache never loads the
lexicons, so a cold start stays close to a bare interpreter's.
"""

from __future__ import annotations

import sys
import threading
TYPE_CHECKING = False  # typing costs ~3 ms of every cold start; annotations are strings
if TYPE_CHECKING:
    from typing import Any

from trading import log
from trading.errors import InvalidParams, RPCError
from trading.handlers import params
from trading.runtime.protocol import rpc
from trading.runtime.service import Service

logger = log.getLogger(__name__)

MAX_TEXTS = 10_000    # texts per score_text call
MAX_TEXT_CHARS = 2_000


class Sentiment(Service):
    name = "sentiment"

    def __init__(self, context=None) -> None:
        super().__init__(context)
        self._news = None
        self._lock = threading.Lock()

    def _engine(self):
        """The :class:`trading.news.headlines.News` of this process, created on first use."""
        store = self.store
        with self._lock:
            if self._news is None:
                from trading.news.headlines import News

                self._news = News(store, self.config["news_half_life_h"])
            return self._news

    def _source(self, source: Any):
        from trading.news.headlines import resolve

        return resolve(params.source(source), self.config["news_source"], self.config.cache_dir)

    @rpc
    def analyze_sentiment(self, symbol: str, source: str | None = None) -> dict[str, Any]:
        """Recency-weighted sentiment of a symbol's headlines: score -1..1, confidence 0..1."""
        sym = params.symbol(symbol)
        return self._engine().analyze(sym, self._source(source))

    @rpc
    def analyze_bulk(self, symbols: list[str], source: str | None = None) -> dict[str, Any]:
        """analyze_sentiment for many symbols: {"results": {SYMBOL: ...}, "errors": {...}}.

        Errors are keyed by the symbol as given; a bad source fails the whole call.
        """
        given, errors = params.symbols(symbols)
        src = self._source(source)  # a bad source fails the whole call: nothing to do per symbol
        engine = self._engine()
        results: dict[str, Any] = {}
        for sym, raws in given.items():
            try:
                results[sym] = engine.analyze(sym, src)
            except RPCError as exc:
                errors.update({params.key(raw): exc.entry() for raw in raws})
        return {"results": results, "errors": errors}

    @rpc
    def score_text(self, texts: list[str]) -> dict[str, Any]:
        """One finance-aware score in -1..1 per text (for ad-hoc use and evaluation)."""
        if not isinstance(texts, list):
            raise InvalidParams("texts must be a list of strings")
        if len(texts) > MAX_TEXTS:
            raise InvalidParams(f"at most {MAX_TEXTS} texts per call, got {len(texts)}")
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise InvalidParams(f"texts[{i}] is {type(t).__name__}, expected a string")
            if len(t) > MAX_TEXT_CHARS:
                raise InvalidParams(f"texts[{i}] is longer than {MAX_TEXT_CHARS} characters")
        from trading.news.scoring import score_texts

        return {"scores": score_texts(texts)}

    def health(self) -> dict[str, Any]:
        scoring = sys.modules.get("trading.news.scoring")  # report, but never trigger, the load
        return {"news_source": self.config["news_source"],
                "news_half_life_h": self.config["news_half_life_h"],
                "lexicons_loaded": bool(scoring and scoring.default_scorer().loaded)}

    def close(self) -> None:
        self._news = None
        super().close()


SERVICE = Sentiment


def run() -> int:
    """The console script ``trading-sentiment``, which the unit runs: a script entry point skips
    ``python -m``'s runpy (about 5 ms of every activation)."""
    from trading.handlers import main

    return main(SERVICE)


if __name__ == "__main__":
    raise SystemExit(run())
