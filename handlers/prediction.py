"""The prediction service: BUY/SELL/HOLD predictions, the prediction log and outcome scoring."""

from __future__ import annotations

from trading.activation import run
from trading.service import Service


class Prediction(Service):
    name = "prediction"


SERVICE = Prediction

if __name__ == "__main__":
    raise SystemExit(run(SERVICE))
