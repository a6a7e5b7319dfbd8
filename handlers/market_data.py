"""The market-data service: Prices, indicators and market context for ASX symbols."""

from __future__ import annotations

from trading.activation import run
from trading.service import Service


class MarketData(Service):
    name = "market-data"


SERVICE = MarketData

if __name__ == "__main__":
    raise SystemExit(run(SERVICE))
