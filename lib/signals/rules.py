"""The decision rules: market data, sentiment and a model probability in, one prediction out.

Pure functions: no I/O, no clock, no imports beyond the standard library, so the prediction
service, the replay and the training helper's backtest all call exactly :func:`decide` and get
the same answer for the same inputs.

How a prediction is made
------------------------
1. **Components**, each in 0..1 with 0.5 neutral (above: the price should rise):

   - ``technical``: market-data's ``technical.tech_score`` (RSI, MACD, price vs SMA20 blended).
   - ``sentiment``: ``0.5 + 0.5 * score * confidence`` from the sentiment service, so a
     headline set we barely believe says little.
   - ``volume``: market-data's ``volume.volume_quality_score``.
   - ``market``: the market context band: BEARISH 0.2, WEAK_BEARISH 0.35, NEUTRAL 0.5,
     WEAK_BULLISH 0.65, BULLISH 0.8 (:data:`CONTEXT_COMPONENT`). A context market-data could
     not measure (no index bars: ``fallback``) or none at all is *missing evidence*, not a
     NEUTRAL reading; see "Without the index" below.
   - ``model``: the active model's probability that the price rises.

   A missing piece of evidence (sentiment, volume, market context) is ``None`` in
   ``components`` and counts as neutral (0.5) at its configured weight (``weights.*``): absent
   evidence dilutes the lean, so a prediction without it is less confident than one with
   supporting evidence, and no neutral or adverse evidence can ever make it more confident
   than its absence did. Without an active model (none trained yet: a state of the install,
   not a failed input) the model weight is redistributed over the others. The reasons say
   which applied.

2. **Score** ``s``: the weighted mean of the present components. ``s > 0.5`` leans bullish,
   ``s < 0.5`` bearish.

3. **Strength** is the lean, ``max(s, 1 - s)``, times the market multiplier for that side,
   times a penalty for each stale input or guessed context (:data:`PENALTY`), clipped to 0..1
   (a score of exactly 0.5 leans nowhere and gets no multiplier). For HOLD it says how close
   the lean came to a signal. It is **not a probability**: the result carries it as
   ``strength`` and, until :func:`trading.signals.calibration.apply` replaces it with the
   calibrated probability of being right, as ``confidence`` too (the reasons then say
   "uncalibrated").

4. **Action**:

   - BUY when the lean is bullish and strength >= the context's ``buy_threshold``; the
     bullish side uses the context's own ``confidence_multiplier`` (a bullish market lifts a
     bullish call, a bearish one damps it).
   - SELL is the mirror image: the bearish side uses the multiplier and threshold of the
     *mirrored* context (BEARISH <-> BULLISH, WEAK_BEARISH <-> WEAK_BULLISH, NEUTRAL itself),
     taken from config ``multiplier.*`` and ``threshold.*``. So in a BEARISH market a SELL needs
     what a BUY needs in a BULLISH one, and vice versa.
     With the default configuration no BUY is possible in a BEARISH market (at most
     1.0 x 0.7 < 0.80) and, mirrored, no SELL in a BULLISH one: the plan's market awareness.
   - HOLD otherwise, and always when the technical component is missing (no usable price
     data), when the market data is stale by more than :data:`MAX_STALE_AGE_S` or its last
     bar is older than that (``days_behind``: a ``csv:`` folder that ended months ago), or
     when the present components carry less than :data:`MIN_COVERAGE` of the configured
     weight.

Without the index
-----------------
The index (``context.index``) is often missing: Yahoo drops ``^AXJO`` days, a ``csv:DIR``
may not have it, and the real bars in tests/data hold it for six months of two years. A
missing market context is treated like any other missing evidence: the ``market`` component is
``None`` and counts as neutral (0.5) at its weight, the thresholds and multipliers are those
of a NEUTRAL market, and the reasons say "no index data". It costs **no extra strength
penalty**: the absent evidence already dilutes the lean, and a penalty on top (0.95 or 0.90,
as before issue 16) pushed every strength under the NEUTRAL threshold, so a gap in index data
silently turned every call into HOLD. What the stated probability of being right means is
then the calibration's job (:mod:`trading.signals.calibration`), not a guessed discount.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

JSON = dict[str, Any]

COMPONENTS = ("technical", "sentiment", "volume", "market", "model")
CONTEXTS = ("BEARISH", "WEAK_BEARISH", "NEUTRAL", "WEAK_BULLISH", "BULLISH")
MIRROR = {"BEARISH": "BULLISH", "WEAK_BEARISH": "WEAK_BULLISH", "NEUTRAL": "NEUTRAL",
          "WEAK_BULLISH": "WEAK_BEARISH", "BULLISH": "BEARISH"}
CONTEXT_COMPONENT = {"BEARISH": 0.2, "WEAK_BEARISH": 0.35, "NEUTRAL": 0.5,
                     "WEAK_BULLISH": 0.65, "BULLISH": 0.8}

# Strength multipliers for inputs we cannot fully trust. A stale cache is still real data,
# so it dents strength. (Missing sentiment or volume is not here: it counts as neutral
# evidence, which lowers strength through the score without ever ranking above a neutral
# reading, as a multiplier on top of redistribution did.)
PENALTY = {
    "market_stale": 0.85,       # market data served from cache after the source failed
    "sentiment_stale": 0.95,    # sentiment served from cache after the news source failed
}  # (no penalty for a missing market context: see "Without the index" above)
NEUTRAL_WHEN_MISSING = ("sentiment", "volume", "market")  # absent evidence counts as 0.5
MAX_STALE_AGE_S = 7 * 24 * 3600  # older market data than a week forces HOLD
MIN_COVERAGE = 0.5               # present components must carry half the configured weight

_DEFAULTS = {  # the config defaults, so a plain dict (or {}) works as cfg in backtests
    "weights.technical": 0.40, "weights.sentiment": 0.20, "weights.volume": 0.15,
    "weights.market": 0.10, "weights.model": 0.15,
    "multiplier.bearish": 0.7, "multiplier.weak_bearish": 0.9, "multiplier.neutral": 1.0,
    "multiplier.weak_bullish": 1.05, "multiplier.bullish": 1.1,
    "threshold.bearish": 0.80, "threshold.weak_bearish": 0.75, "threshold.neutral": 0.70,
    "threshold.weak_bullish": 0.68, "threshold.bullish": 0.65,
}


def setting(cfg: Any, key: str) -> float:
    """``cfg[key]`` for a :class:`trading.config.Config` or any mapping, else the default."""
    try:
        value = cfg[key]
    except (KeyError, TypeError, IndexError):
        value = None
    return float(_DEFAULTS[key] if value is None else value)


def _num(value: Any) -> float | None:
    """A finite float, or None for anything else (None, NaN, strings, bools)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _unit(value: Any) -> float | None:
    v = _num(value)
    return None if v is None else min(1.0, max(0.0, v))


def _section(d: Mapping | None, key: str) -> Mapping:
    value = d.get(key) if isinstance(d, Mapping) else None
    return value if isinstance(value, Mapping) else {}


def side_terms(context: str, cfg: Any) -> dict[str, float]:
    """Multiplier and threshold of each side in ``context`` from the configuration."""
    ctx = context if context in MIRROR else "NEUTRAL"
    mirror = MIRROR[ctx].lower()
    return {"buy_multiplier": setting(cfg, f"multiplier.{ctx.lower()}"),
            "buy_threshold": setting(cfg, f"threshold.{ctx.lower()}"),
            "sell_multiplier": setting(cfg, f"multiplier.{mirror}"),
            "sell_threshold": setting(cfg, f"threshold.{mirror}")}


def components(market: Mapping, sentiment: Mapping | None,
               model_probability: float | None) -> dict[str, float | None]:
    """The five components in 0..1 (0.5 neutral), ``None`` where the input is missing."""
    tech = _section(market, "technical")
    vol = _section(market, "volume")
    context = _section(market, "market_context")
    # A fallback context is market-data saying "no index data", not a NEUTRAL measurement.
    ctx = None if context.get("fallback") else context.get("context")
    sent = None
    if isinstance(sentiment, Mapping):
        score, conf = _num(sentiment.get("score")), _unit(sentiment.get("confidence"))
        if score is not None:
            score = min(1.0, max(-1.0, score))
            sent = 0.5 + 0.5 * score * (1.0 if conf is None else conf)
    return {
        "technical": _unit(tech.get("tech_score")),
        "sentiment": sent,
        "volume": _unit(vol.get("volume_quality_score")),
        "market": CONTEXT_COMPONENT.get(ctx) if isinstance(ctx, str) else None,
        "model": _unit(model_probability),
    }


def decide(market: Mapping, sentiment: Mapping | None, model_probability: float | None,
           cfg: Any, *, model_version: str | None = None,
           created_at: str | None = None) -> JSON:
    """One prediction from one symbol's inputs (shapes: market-data ``bulk_fetch`` result,
    sentiment ``analyze_bulk`` result or None, the model's probability or None).

    Returns ``{symbol, action, confidence, strength, score, lean, components, weights,
    market_context, confidence_multiplier, buy_threshold, sell_threshold, price, rsi,
    sentiment_score, reasons, data_stale, model_version, created_at}``; see the module
    docstring for the rules.
    ``created_at`` is passed through (this function reads no clock).
    """
    market = market if isinstance(market, Mapping) else {}
    reasons: list[str] = []
    penalty = 1.0
    force_hold: list[str] = []

    comp = components(market, sentiment, model_probability)
    tech = _section(market, "technical")
    context_info = _section(market, "market_context")

    # -- the market context -------------------------------------------------------------
    context = context_info.get("context")
    if context not in MIRROR or context_info.get("fallback"):
        context = "NEUTRAL"
        reasons.append("no index data: market context unknown, counted as neutral (0.5) at "
                       "its weight, NEUTRAL thresholds")
    terms = side_terms(context, cfg)
    # The context's own terms come from market-data (computed from the same config); prefer
    # them so the prediction agrees with what market-data reported.
    buy_mult = _num(context_info.get("confidence_multiplier")) or terms["buy_multiplier"]
    buy_threshold = _unit(context_info.get("buy_threshold")) or terms["buy_threshold"]
    trend = _num(context_info.get("trend_pct"))
    reasons.append(f"market {context}" + (f" (index {trend:+.2f}%)" if trend is not None else "")
                   + f": BUY needs {buy_threshold:.2f} (x{buy_mult:g}), "
                   f"SELL needs {terms['sell_threshold']:.2f} (x{terms['sell_multiplier']:g})")

    # -- staleness ------------------------------------------------------------------------
    market_stale = bool(market.get("stale"))
    age = _num(market.get("age_s"))
    behind = _num(market.get("days_behind"))
    if market_stale:
        penalty *= PENALTY["market_stale"]
        reasons.append("market data is stale" + (f" ({age / 3600:.1f} h old)" if age else "")
                       + f"; strength x{PENALTY['market_stale']}")
        if age is not None and age > MAX_STALE_AGE_S:
            force_hold.append(f"market data is {age / 86400:.1f} days old")
    old = behind is not None and behind * 86400 > MAX_STALE_AGE_S  # Easter's gap is 5 days
    if old:
        # Read fresh, but its last bar is old (a csv: folder that ends months ago): a call
        # for today from it would be a call about a market long gone.
        force_hold.append(f"the last bar ({market.get('as_of')}) is {behind:.0f} days old")
    sentiment_stale = isinstance(sentiment, Mapping) and bool(sentiment.get("stale"))
    if comp["sentiment"] is None:
        reasons.append("sentiment missing: counted as neutral (0.5) at its weight")
    elif sentiment_stale:
        penalty *= PENALTY["sentiment_stale"]
        reasons.append(f"sentiment is stale; strength x{PENALTY['sentiment_stale']}")
    if comp["model"] is None:
        reasons.append("no active model: the model weight is redistributed")
    if comp["technical"] is None:
        force_hold.append("no technical score (price data missing)")
    if comp["volume"] is None:
        reasons.append("volume score missing: counted as neutral (0.5) at its weight")

    # -- score ------------------------------------------------------------------------------
    configured = {name: max(0.0, setting(cfg, f"weights.{name}")) for name in COMPONENTS}
    present = {n: w for n, w in configured.items() if comp[n] is not None and w > 0}
    total = sum(configured.values())
    covered = sum(present.values())
    # Missing evidence stays in at 0.5; only an absent model gives its weight away.
    counted = {n: w for n, w in configured.items()
               if w > 0 and (comp[n] is not None or n in NEUTRAL_WHEN_MISSING)}
    if present and covered > 0:
        weight_sum = sum(counted.values())
        weights = {n: w / weight_sum for n, w in counted.items()}
        score = sum(weights[n] * (0.5 if comp[n] is None else comp[n]) for n in weights)
    else:
        weights, score = {}, 0.5
    coverage = covered / total if total > 0 else 0.0
    if coverage < MIN_COVERAGE:
        force_hold.append(f"inputs cover only {coverage:.0%} of the configured weight")

    rsi = _num(tech.get("rsi"))
    parts = ", ".join(f"{n} {comp[n]:.2f}" for n in COMPONENTS if comp[n] is not None)
    reasons.append(f"score {score:.3f} from {parts}" if parts else "no components available")

    # -- strength and action --------------------------------------------------------------
    # Float noise must not pick a side: a score within 1e-12 of 0.5 has no lean, and then no
    # side's multiplier applies (so the mirror rule holds exactly at the middle too).
    score = round(score, 12)
    bullish = score >= 0.5
    mult = 1.0 if score == 0.5 else buy_mult if bullish else terms["sell_multiplier"]
    threshold = buy_threshold if bullish else terms["sell_threshold"]
    strength = min(1.0, max(0.0, max(score, 1.0 - score) * mult * penalty))
    if force_hold:
        action = "HOLD"
        reasons.append("HOLD forced: " + "; ".join(force_hold))
    elif score == 0.5:
        action = "HOLD"
        reasons.append("HOLD: no lean either way")
    elif strength >= threshold:
        action = "BUY" if bullish else "SELL"
        reasons.append(f"{action}: strength {strength:.3f} >= threshold {threshold:.2f}")
    else:
        action = "HOLD"
        reasons.append(f"HOLD: {'bullish' if bullish else 'bearish'} strength "
                       f"{strength:.3f} < {'BUY' if bullish else 'SELL'} threshold "
                       f"{threshold:.2f}")

    sent_score = _num(sentiment.get("score")) if isinstance(sentiment, Mapping) else None
    price = _num(tech.get("current_price"))
    if price is None:
        price = _num(tech.get("market_price"))
    return {
        "symbol": market.get("symbol"),
        "action": action,
        # The rules' strength (what the thresholds compare), not a probability: a calibration
        # (trading.signals.calibration.apply) puts the probability in "confidence" and keeps
        # this as "strength"; uncalibrated, "confidence" stays this and says so.
        "confidence": round(strength, 4),
        "strength": round(strength, 4),
        "score": round(score, 4),
        "lean": "NEUTRAL" if score == 0.5 else ("BULLISH" if bullish else "BEARISH"),
        "components": {n: None if v is None else round(v, 4) for n, v in comp.items()},
        "weights": {n: round(w, 4) for n, w in weights.items()},
        "market_context": context,
        "confidence_multiplier": buy_mult,
        "buy_threshold": buy_threshold,
        "sell_threshold": terms["sell_threshold"],
        "price": price,
        "rsi": None if rsi is None else round(rsi, 2),
        "sentiment_score": sent_score,
        "reasons": reasons,
        "data_stale": market_stale or sentiment_stale or old,
        "model_version": model_version if comp["model"] is not None else None,
        "created_at": created_at,
    }


# What the comparison in docs/choosing-the-predictor.md found, said where a call is withheld.
NO_EDGE = ("the rules' BUY/SELL calls showed no edge after costs over twenty years of ASX "
           "stocks (docs/choosing-the-predictor.md); set directional_calls = true to make them")


def directional(cfg: Any) -> bool:
    """Whether the rules may call BUY and SELL (the ``directional_calls`` setting)."""
    try:
        value = cfg["directional_calls"]
    except (KeyError, TypeError):
        return False
    return value is True


def withhold(p: JSON) -> JSON:
    """Turn a BUY or SELL of :func:`decide` into a HOLD that says what the rules leant to
    (``rules_call``) and why no call is made. A HOLD stays as it is."""
    call = p.get("action")
    if call in ("BUY", "SELL"):
        p["rules_call"] = call
        p["action"] = "HOLD"
        reasons = p["reasons"]
        for k, r in enumerate(reasons):  # the line that decided: "BUY: strength ... >= ..."
            if r.startswith(f"{call}: "):
                why = r[len(call) + 2:]
                reasons[k] = f"HOLD: no directional call; the rules lean {call} ({why})"
        reasons.append(NO_EDGE)
    return p


def predict(*, symbol: str, market: Mapping, sentiment: Mapping | None,
            model: Mapping | None, config: Any) -> JSON:
    """The built-in predictor, the default ``predictor`` (``trading.signals.rules:predict``):
    :func:`decide` in the native predictor form (docs/predictors.md), loaded and called
    like any plugged-in one. Unless ``directional_calls`` is set, a BUY or SELL is withheld
    (:func:`withhold`): over twenty years of ASX stocks the rules' directional calls lost
    after costs against simply holding, so the default says HOLD and keeps the probability
    that the price stays in its band, which does carry skill."""
    model = model if isinstance(model, Mapping) else {}
    p = decide(market, sentiment, model.get("probability"), config,
               model_version=model.get("version"))
    return p if directional(config) else withhold(p)
