"""The decision rules: every context band and threshold edge, the mirror rule for SELL,
stale and missing inputs, the model component, and purity.

Inputs are dicts in exactly the shapes market-data ``bulk_fetch`` and sentiment
``analyze_bulk`` return per symbol.
"""

from __future__ import annotations

import copy

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from trading import config
from trading.signals import rules

CONTEXTS = rules.CONTEXTS


@pytest.fixture
def cfg():
    return config.load(environ={})


def market(ctx="NEUTRAL", tech=0.5, vol=0.5, *, cfg=None, stale=False, age=60.0,
           fallback=False, price=100.0, rsi=50.0):
    cfg = cfg if cfg is not None else config.load(environ={})
    key = ctx.lower()
    return {
        "symbol": "CBA.AX", "as_of": "2026-01-02", "source": "sample", "stale": stale,
        "age_s": age,
        "technical": {"current_price": price, "rsi": rsi, "macd_histogram": 0.0,
                      "price_vs_sma20": 0.0, "tech_score": tech, "market_price": price},
        "volume": {"volume_trend": 0.0, "price_volume_correlation": 0.0,
                   "volume_quality_score": vol},
        "market_context": {"context": ctx, "trend_pct": 0.0,
                           "confidence_multiplier": cfg[f"multiplier.{key}"],
                           "buy_threshold": cfg[f"threshold.{key}"], "fallback": fallback},
    }


def sentiment(score=0.0, confidence=1.0, stale=False):
    return {"symbol": "CBA.AX", "score": score, "confidence": confidence, "headline_count": 3,
            "stale": stale}


def tech_only(cfg):
    """The default configuration with every weight but the technical one at zero: the score
    is then exactly the technical component, so edges can be placed precisely."""
    values = dict(cfg.items())
    for name in ("sentiment", "volume", "market", "model"):
        values[f"weights.{name}"] = 0.0
    return values


# -- threshold edges at every context band -------------------------------------------------
@pytest.mark.parametrize("ctx", CONTEXTS)
def test_buy_at_the_threshold_and_hold_just_below(cfg, ctx):
    c = tech_only(cfg)
    mult, threshold = c[f"multiplier.{ctx.lower()}"], c[f"threshold.{ctx.lower()}"]
    edge = threshold / mult  # the technical score whose confidence is exactly the threshold
    if edge > 1.0:
        # BEARISH (0.80 / 0.7) and the like: no score can reach the threshold; BUY is off.
        p = rules.decide(market(ctx, 1.0, cfg=cfg), sentiment(), None, c)
        assert p["action"] == "HOLD"
        assert p["confidence"] == pytest.approx(mult)
        assert "< BUY threshold" in p["reasons"][-1]
        return
    above = rules.decide(market(ctx, edge + 1e-9, cfg=cfg), sentiment(), None, c)
    below = rules.decide(market(ctx, edge - 1e-6, cfg=cfg), sentiment(), None, c)
    assert above["action"] == "BUY", above["reasons"]
    assert above["confidence"] == pytest.approx(threshold, abs=1e-4)
    assert above["buy_threshold"] == threshold
    assert below["action"] == "HOLD", below["reasons"]
    assert below["lean"] == "BULLISH"


@pytest.mark.parametrize("ctx", CONTEXTS)
def test_sell_uses_the_mirrored_context(cfg, ctx):
    c = tech_only(cfg)
    mirror = rules.MIRROR[ctx].lower()
    mult, threshold = c[f"multiplier.{mirror}"], c[f"threshold.{mirror}"]
    edge = 1.0 - threshold / mult  # score at which the bearish confidence hits the threshold
    if edge < 0.0:
        p = rules.decide(market(ctx, 0.0, cfg=cfg), sentiment(), None, c)
        assert p["action"] == "HOLD" and p["lean"] == "BEARISH"
        return
    sell = rules.decide(market(ctx, edge - 1e-9, cfg=cfg), sentiment(), None, c)
    hold = rules.decide(market(ctx, edge + 1e-6, cfg=cfg), sentiment(), None, c)
    assert sell["action"] == "SELL", sell["reasons"]
    assert sell["sell_threshold"] == threshold
    assert hold["action"] == "HOLD"


def test_the_context_multiplier_scales_confidence(cfg):
    c = tech_only(cfg)
    conf = {ctx: rules.decide(market(ctx, 0.6, cfg=cfg), sentiment(), None, c)["confidence"]
            for ctx in CONTEXTS}
    for ctx in CONTEXTS:
        assert conf[ctx] == pytest.approx(0.6 * cfg[f"multiplier.{ctx.lower()}"], abs=1e-4)
    assert conf["BEARISH"] < conf["NEUTRAL"] < conf["BULLISH"]


def test_bands_change_the_action_for_the_same_evidence(cfg):
    # Technical 0.62 alone: a BUY in a BULLISH market (0.682 >= 0.65), HOLD when NEUTRAL.
    c = tech_only(cfg)
    assert rules.decide(market("BULLISH", 0.62, cfg=cfg), sentiment(), None, c)["action"] == "BUY"
    assert rules.decide(market("NEUTRAL", 0.62, cfg=cfg), sentiment(), None, c)["action"] == "HOLD"


def test_neutral_evidence_holds(cfg):
    p = rules.decide(market("NEUTRAL", 0.5, 0.5, cfg=cfg), sentiment(0.0), 0.5, cfg)
    assert p["action"] == "HOLD"
    assert p["score"] == 0.5
    assert "no lean" in p["reasons"][-1]


# -- components and weights ------------------------------------------------------------------
def test_weights_come_from_config_and_are_normalised(cfg):
    p = rules.decide(market("WEAK_BULLISH", 0.7, 0.6, cfg=cfg), sentiment(0.4, 0.5), 0.8, cfg,
                     model_version="m1")
    comps = p["components"]
    assert comps == {"technical": 0.7, "sentiment": 0.6, "volume": 0.6,
                     "market": rules.CONTEXT_COMPONENT["WEAK_BULLISH"], "model": 0.8}
    total = sum(cfg[f"weights.{n}"] for n in rules.COMPONENTS)
    expected = sum(cfg[f"weights.{n}"] * comps[n] for n in rules.COMPONENTS) / total
    assert p["score"] == pytest.approx(expected, abs=1e-4)
    assert sum(p["weights"].values()) == pytest.approx(1.0, abs=1e-3)
    assert p["model_version"] == "m1"


def test_without_a_model_its_weight_is_redistributed(cfg):
    p = rules.decide(market("NEUTRAL", 0.7, cfg=cfg), sentiment(), None, cfg, model_version="m1")
    assert p["components"]["model"] is None
    assert "model" not in p["weights"]
    assert p["model_version"] is None  # no probability used, so no version to credit
    assert any("no active model" in r for r in p["reasons"])
    present = sum(cfg[f"weights.{n}"] for n in ("technical", "sentiment", "volume", "market"))
    assert p["weights"]["technical"] == pytest.approx(cfg["weights.technical"] / present, abs=1e-4)


def test_a_model_moves_the_score(cfg):
    base = rules.decide(market(tech=0.6, cfg=cfg), sentiment(), None, cfg)
    up = rules.decide(market(tech=0.6, cfg=cfg), sentiment(), 0.95, cfg, model_version="v")
    down = rules.decide(market(tech=0.6, cfg=cfg), sentiment(), 0.05, cfg, model_version="v")
    assert down["score"] < base["score"] < up["score"]


def test_a_plain_dict_config_uses_the_defaults(cfg):
    m = market("BULLISH", 0.8, 0.7, cfg=cfg)
    assert rules.decide(m, sentiment(0.3), 0.6, {}) == rules.decide(m, sentiment(0.3), 0.6, cfg)


# -- stale and missing inputs ---------------------------------------------------------------
def test_missing_sentiment_counts_as_neutral_and_is_stated(cfg):
    m = market("NEUTRAL", 0.75, 0.5, cfg=cfg)
    neutral = rules.decide(m, sentiment(0.0), None, cfg)
    without = rules.decide(m, None, None, cfg)
    supportive = rules.decide(m, sentiment(0.6), None, cfg)
    assert without["components"]["sentiment"] is None
    assert neutral["components"]["sentiment"] == 0.5
    # Absent news is no evidence: exactly a neutral reading, below supporting news.
    assert without["score"] == neutral["score"]
    assert without["confidence"] == neutral["confidence"] < supportive["confidence"]
    assert without["weights"]["sentiment"] == pytest.approx(
        cfg["weights.sentiment"] / (1 - cfg["weights.model"]), abs=1e-4)
    assert any("sentiment missing: counted as neutral" in r for r in without["reasons"])


def test_adverse_news_never_turns_a_hold_into_a_call():
    """The review's case: strong technicals and volume, no news gave HOLD 0.693, and slightly
    bearish news at half confidence lifted it to BUY 0.701 (a missing-sentiment penalty on
    top of redistributing its weight). No adverse or neutral reading may raise confidence."""
    cfg = config.load(environ={})
    m = market("NEUTRAL", 0.77, 0.95, cfg=cfg)
    without = rules.decide(m, None, None, cfg)
    bearish = rules.decide(m, sentiment(-0.1, 0.5), None, cfg)
    assert bearish["confidence"] < without["confidence"]
    for tech in (0.55, 0.65, 0.75, 0.85, 0.95, 1.0):
        for vol in (0.5, 0.8, 1.0):
            for ctx in CONTEXTS:
                m = market(ctx, tech, vol, cfg=cfg)
                base = rules.decide(m, None, None, cfg)
                if base["score"] <= 0.5:
                    continue  # bearish news supports a bearish lean: it may add confidence
                for score in (-1.0, -0.1, -0.02, 0.0):
                    for conf in (0.0, 0.5, 1.0):
                        p = rules.decide(m, sentiment(score, conf), None, cfg)
                        if p["score"] > 0.5:  # still bullish: it may only be less sure
                            assert p["confidence"] <= base["confidence"] + 1e-9, (tech, ctx)
                        if base["action"] == "HOLD":
                            assert p["action"] != "BUY", (tech, vol, ctx, score, conf)


def test_missing_volume_counts_as_neutral(cfg):
    m = market("NEUTRAL", 0.8, None, cfg=cfg)
    n = rules.decide(market("NEUTRAL", 0.8, 0.5, cfg=cfg), sentiment(), None, cfg)
    p = rules.decide(m, sentiment(), None, cfg)
    assert p["components"]["volume"] is None and p["score"] == n["score"]
    assert any("volume score missing" in r for r in p["reasons"])


def test_stale_market_data_lowers_confidence_and_can_flip_buy_to_hold(cfg):
    c = tech_only(cfg)
    fresh = rules.decide(market("NEUTRAL", 0.75, cfg=cfg), sentiment(), None, c)
    stale = rules.decide(market("NEUTRAL", 0.75, cfg=cfg, stale=True, age=7200), sentiment(),
                         None, c)
    assert fresh["action"] == "BUY" and not fresh["data_stale"]
    assert stale["confidence"] == pytest.approx(0.75 * rules.PENALTY["market_stale"], abs=1e-4)
    assert stale["action"] == "HOLD" and stale["data_stale"]
    assert any("stale" in r for r in stale["reasons"])


def test_market_data_older_than_the_limit_forces_hold(cfg):
    c = tech_only(cfg)
    p = rules.decide(market("BULLISH", 1.0, cfg=cfg, stale=True,
                            age=rules.MAX_STALE_AGE_S + 1), sentiment(), None, c)
    assert p["action"] == "HOLD"
    assert p["reasons"][-1].startswith("HOLD forced: market data is")


def test_stale_sentiment_is_penalised(cfg):
    c = tech_only(cfg)
    p = rules.decide(market("NEUTRAL", 0.8, cfg=cfg), sentiment(stale=True), None, c)
    assert p["confidence"] == pytest.approx(0.8 * rules.PENALTY["sentiment_stale"], abs=1e-4)
    assert p["data_stale"]


def test_no_technical_score_forces_hold(cfg):
    m = market("BULLISH", None, 1.0, cfg=cfg)
    p = rules.decide(m, sentiment(1.0), 1.0, cfg)
    assert p["components"]["technical"] is None
    assert p["action"] == "HOLD"
    assert "no technical score" in p["reasons"][-1]


def test_too_little_evidence_forces_hold(cfg):
    m = market("BULLISH", 1.0, cfg=cfg)
    m["volume"]["volume_quality_score"] = None
    values = dict(cfg.items())
    values["weights.technical"] = 0.1  # technical + market = 0.2 of 0.7 configured
    p = rules.decide(m, None, None, values)
    assert p["action"] == "HOLD"
    assert "cover only" in p["reasons"][-1]


def test_a_missing_or_fallback_context_is_neutral_evidence_flagged_not_a_penalty(cfg):
    c = tech_only(cfg)
    c["weights.market"] = cfg["weights.market"]  # the market weight counts the missing context
    measured = rules.decide(market("NEUTRAL", 0.8, cfg=cfg), sentiment(), None, c)
    fb = rules.decide(market("NEUTRAL", 0.8, cfg=cfg, fallback=True), sentiment(), None, c)
    m = market("NEUTRAL", 0.8, cfg=cfg)
    m["market_context"] = None
    none = rules.decide(m, sentiment(), None, c)
    for p in (fb, none):
        # Same lean and confidence as a measured NEUTRAL market: no penalty on top ...
        assert p["confidence"] == pytest.approx(measured["confidence"], abs=1e-9)
        assert p["action"] == measured["action"] == "BUY"
        # ... but the component is missing, not a NEUTRAL reading, and the reasons say so.
        assert p["components"]["market"] is None
        assert any("no index data" in r for r in p["reasons"])
        assert p["market_context"] == "NEUTRAL"
        assert p["buy_threshold"] == cfg["threshold.neutral"]
    assert measured["components"]["market"] == 0.5
    assert not any("no index data" in r for r in measured["reasons"])


def test_garbage_values_count_as_missing(cfg):
    m = market("NEUTRAL", float("nan"), "high", cfg=cfg)
    p = rules.decide(m, {"score": "good", "confidence": None}, float("inf"), cfg)
    assert p["components"]["technical"] is None
    assert p["components"]["volume"] is None
    assert p["components"]["sentiment"] is None
    assert p["components"]["model"] is None
    assert p["action"] == "HOLD"


def test_sentiment_component_is_scaled_by_its_confidence(cfg):
    comps = rules.components(market(cfg=cfg), sentiment(0.8, 0.5), None)
    assert comps["sentiment"] == pytest.approx(0.5 + 0.5 * 0.8 * 0.5)


# -- purity and properties ---------------------------------------------------------------------
def test_decide_is_pure(cfg):
    m, s = market("WEAK_BEARISH", 0.3, 0.4, cfg=cfg), sentiment(-0.5)
    before = copy.deepcopy((m, s))
    a = rules.decide(m, s, 0.4, cfg, model_version="x", created_at="2026-01-02T05:30:00+00:00")
    b = rules.decide(m, s, 0.4, cfg, model_version="x", created_at="2026-01-02T05:30:00+00:00")
    assert a == b
    assert (m, s) == before
    assert a["created_at"] == "2026-01-02T05:30:00+00:00"


unit = st.floats(0, 1, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(ctx=st.sampled_from(CONTEXTS), tech=unit, vol=unit, sent=st.floats(-1, 1),
       sconf=unit, model=st.one_of(st.none(), unit), stale=st.booleans())
# A score of exactly 0.5: no side's multiplier may apply (found by hypothesis).
@example(ctx="WEAK_BULLISH", tech=0.65, vol=0.0, sent=0.0, sconf=0.0, model=None, stale=False)
def test_sell_is_the_mirror_image_of_buy(ctx, tech, vol, sent, sconf, model, stale):
    cfg = config.load(environ={})
    p = rules.decide(market(ctx, tech, vol, cfg=cfg, stale=stale), sentiment(sent, sconf),
                     model, cfg)
    q = rules.decide(market(rules.MIRROR[ctx], 1 - tech, 1 - vol, cfg=cfg, stale=stale),
                     sentiment(-sent, sconf), None if model is None else 1 - model, cfg)
    assert 0.0 <= p["confidence"] <= 1.0
    assert p["confidence"] == pytest.approx(q["confidence"], abs=2e-4)
    flip = {"BUY": "SELL", "SELL": "BUY", "HOLD": "HOLD"}
    if abs(p["confidence"] - p["buy_threshold"]) > 1e-6 and \
            abs(p["confidence"] - p["sell_threshold"]) > 1e-6:
        assert q["action"] == flip[p["action"]]


@settings(max_examples=200, deadline=None)
@given(ctx=st.sampled_from(CONTEXTS), tech=unit, delta=st.floats(0, 1), vol=unit)
def test_more_bullish_technicals_never_turn_a_buy_into_something_else(ctx, tech, delta, vol):
    cfg = config.load(environ={})
    higher = min(1.0, tech + delta)
    a = rules.decide(market(ctx, tech, vol, cfg=cfg), sentiment(), None, cfg)
    b = rules.decide(market(ctx, higher, vol, cfg=cfg), sentiment(), None, cfg)
    assert b["score"] >= a["score"] - 1e-9
    if a["action"] == "BUY":
        assert b["action"] == "BUY"


# -- strength is not a probability --------------------------------------------------------
@pytest.mark.parametrize("inputs", [
    (market("BULLISH", 0.99, cfg=None), sentiment(0.9)),                # a BUY
    (market("BEARISH", 0.01, cfg=None), sentiment(-0.9)),               # a SELL
    (market("NEUTRAL", 0.6, cfg=None, stale=True), sentiment(stale=True)),  # penalties, HOLD
])
def test_the_rules_word_their_number_as_strength_never_as_confidence(cfg, inputs):
    """The rules' number is the strength of a lean; "confidence" in a reason would read as
    the probability of being right, which only a calibration can state (issue 16)."""
    p = rules.decide(*inputs, None, cfg)
    assert p["strength"] == p["confidence"]
    assert any("strength" in r for r in p["reasons"]), p["reasons"]
    assert not [r for r in p["reasons"] if "confidence" in r], p["reasons"]


def test_a_last_bar_more_than_a_week_old_forces_hold(cfg):
    """A csv: folder that ends months ago is read fresh, not stale (market-data says how far
    behind it is): a call for today from it would be about a market long gone."""
    m = market("BULLISH", 0.99, cfg=cfg)
    assert rules.decide(m, sentiment(0.9), None, cfg)["action"] == "BUY"
    old = dict(m, age_s=1.0, days_behind=330, as_of="2025-12-31")  # read fresh, not stale
    p = rules.decide(old, sentiment(0.9), None, cfg)
    assert p["action"] == "HOLD" and p["data_stale"]
    assert "the last bar (2025-12-31) is 330 days old" in p["reasons"][-1]
    easter = dict(m, days_behind=5)  # Thursday to Tuesday over Easter: not old
    assert rules.decide(easter, sentiment(0.9), None, cfg)["action"] == "BUY"
