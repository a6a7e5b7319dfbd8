"""An example predictor written against the monolith's contract (docs/predictors.md).

Drop this file into the predictors folder (``~/.config/trading/predictors/`` for a user,
``/etc/trading/predictors/`` for a system install) and name it in the configuration::

    predictor = "momentum:EnhancedMarketAwarePredictor"

It is called exactly as the monolith called its predictor, once per symbol::

    prediction = predictor.calculate_confidence(symbol=symbol, tech_data=..., news_data=...,
                                                volume_data=..., market_data=...)

and uses only the standard library and the monolith's field names, so it would run unchanged
in the old cron job too. The logic is a plain trend follower, the opposite of the built-in
rules' contrarian RSI reading: price above its 20-day average with a rising MACD histogram,
confirmed by volume and not yet overbought, is a BUY; the mirror image a SELL. It is an
example of the contract, not advice: `trading backtest --compare` shows how it fares.
"""

import math

__version__ = "1.0"


class EnhancedMarketAwarePredictor:
    """Trend following, damped or lifted by the market context like the monolith's."""

    SELL_THRESHOLD = 0.70   # the bearish side's bar (the bullish one is market_data's)
    OVERBOUGHT, OVERSOLD = 75.0, 25.0

    def __init__(self):
        self.weights = {"trend": 0.6, "volume": 0.2, "news": 0.2}

    def calculate_confidence(self, symbol, tech_data, news_data, volume_data, market_data):
        price = tech_data.get("current_price") or tech_data.get("market_price")
        if not price:
            return {"action": "HOLD", "confidence": 0.0, "reason": "no price"}
        rsi = tech_data.get("rsi")
        # Trend: distance from the 20-day average, and the MACD histogram as % of price.
        above = math.tanh((tech_data.get("price_vs_sma20") or 0.0) / 3.0)
        macd = math.tanh((tech_data.get("macd_histogram") or 0.0) / price * 100 / 0.2)
        trend = 0.5 * above + 0.5 * macd
        volume = 2.0 * ((volume_data.get("volume_quality_score") or 0.5) - 0.5)
        news = (news_data.get("score") or 0.0) * (news_data.get("confidence") or 0.0)
        w = self.weights
        lean = w["trend"] * trend + w["volume"] * volume + w["news"] * news  # -1 .. 1

        strength = 0.5 + 0.5 * abs(lean)
        if lean > 0:
            confidence = min(1.0, strength * market_data["confidence_multiplier"])
            action = "BUY" if confidence >= market_data["buy_threshold"] else "HOLD"
            if action == "BUY" and rsi is not None and rsi > self.OVERBOUGHT:
                action = "HOLD"
        else:
            confidence = strength
            action = "SELL" if confidence >= self.SELL_THRESHOLD else "HOLD"
            if action == "SELL" and rsi is not None and rsi < self.OVERSOLD:
                action = "HOLD"
        return {
            "action": action,
            "confidence": round(confidence, 4),
            "score": round(0.5 + 0.5 * lean, 4),
            "reason": (f"{symbol}: trend {trend:+.2f}, volume {volume:+.2f}, news {news:+.2f}"
                       f" -> lean {lean:+.2f} in a {market_data['context']} market"),
        }
