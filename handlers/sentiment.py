"""The sentiment service: News headlines per symbol, scored by a finance-aware scorer."""

from __future__ import annotations

from trading.activation import run
from trading.service import Service


class Sentiment(Service):
    name = "sentiment"


SERVICE = Sentiment

if __name__ == "__main__":
    raise SystemExit(run(SERVICE))
