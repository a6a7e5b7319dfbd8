"""The training service: Walk-forward model training, the model registry and backtests."""

from __future__ import annotations

from trading.activation import run
from trading.service import Service


class Training(Service):
    name = "training"


SERVICE = Training

if __name__ == "__main__":
    raise SystemExit(run(SERVICE))
