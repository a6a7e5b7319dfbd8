"""The scorecard: every figure with its n, its uncertainty and its baselines.

A hit rate alone says little: HOLD is "right" whenever the price moved less than a band, so
a pooled hit rate is mostly the market's quietness, and a BUY hit rate on eight calls is
noise. So :func:`horizon_card` reports, for one horizon and one set of scored predictions:

- **calls apart**: BUY and SELL (together and each) and HOLD, never pooled into one "all";
  each with n, hits, the hit rate and its 95 % Wilson interval (:func:`wilson`), flagged
  ``too_few`` under :data:`MIN_N` = 30;
- **baselines over the same sessions**: the same action taken on every scored row (always
  HOLD; always BUY, which is buy-and-hold's direction; always SELL), the majority class (the
  constant action right most often on these rows, chosen in hindsight, so a generous
  baseline), and the mean return of buy-and-hold beside the mean return of acting on the calls
  (a BUY earns the return, a SELL its negative);
- **the probability of being right** (calibrated, :mod:`trading.signals.calibration`) as a
  forecast: Brier score, the Brier score of climatology (always saying the base rate of
  being right over these rows, known only in hindsight), the Brier skill score
  ``1 - brier / brier_climatology``, the expected calibration error over ten equal-width bins
  (:func:`ece`) and the reliability table (stated vs observed per bin, with n and interval).
  The same for the rules' raw strength on the same rows, so before and after sit side by
  side. Predictions made without a calibration (too little history) are counted and left out
  of these figures, never scored as if their raw strength were a probability. Climatology is
  also given walk-forward (the base rate of the outcomes settled before each prediction),
  the reference a forecaster could actually have used.

numpy is imported by the functions that need it; the report path pays for it, nothing else.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from typing import Any

JSON = dict[str, Any]
MIN_N = 30            # below this a group is flagged "too few to judge"
BINS = 10             # equal-width reliability bins over 0..1
Z95 = 1.959963984540054


def wilson(hits: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion (95 % by default); None for n = 0."""
    if n <= 0:
        return None
    p = hits / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _r(x: float | None, digits: int = 4) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), digits)


def rate(hits: int, n: int) -> JSON:
    """``{n, hits, hit_rate, ci95, too_few}``."""
    ci = wilson(hits, n)
    return {"n": n, "hits": hits, "hit_rate": _r(hits / n) if n else None,
            "ci95": [_r(ci[0]), _r(ci[1])] if ci else None, "too_few": n < MIN_N}


def brier(p: Sequence[float], y: Sequence[int]) -> float | None:
    if not len(p):
        return None
    return sum((a - b) ** 2 for a, b in zip(p, y)) / len(p)


def reliability(p: Sequence[float], y: Sequence[int], bins: int = BINS) -> list[JSON]:
    """Per equal-width bin of the stated probability: n, mean stated, observed rate, CI."""
    out = []
    for k in range(bins):
        lo, hi = k / bins, (k + 1) / bins
        idx = [i for i, v in enumerate(p) if (lo <= v < hi) or (k == bins - 1 and v == 1.0)]
        if not idx:
            continue
        hits = sum(y[i] for i in idx)
        out.append({"bin": f"{lo:.1f}-{hi:.1f}", "mean_stated": _r(sum(p[i] for i in idx)
                                                                  / len(idx)),
                    **rate(hits, len(idx))})
    return out


def ece(p: Sequence[float], y: Sequence[int], bins: int = BINS) -> float | None:
    """Expected calibration error: the n-weighted mean |stated - observed| over the bins."""
    if not len(p):
        return None
    table = reliability(p, y, bins)
    return sum(b["n"] * abs(b["mean_stated"] - b["hit_rate"]) for b in table) / len(p)


def forecast(p: Sequence[float], y: Sequence[int]) -> JSON:
    """Brier, climatology, skill, ECE and the reliability table of probabilities ``p``."""
    n = len(p)
    if not n:
        return {"n": 0, "brier": None, "base_rate": None, "brier_climatology": None,
                "brier_skill": None, "ece": None, "reliability": []}
    b = brier(p, y)
    base = sum(y) / n
    clim = brier([base] * n, y)
    return {"n": n, "brier": _r(b), "base_rate": _r(base), "brier_climatology": _r(clim),
            "brier_skill": _r(1 - b / clim) if clim else None, "ece": _r(ece(p, y)),
            "reliability": reliability(p, y)}


def walk_forward_climatology(rows: Sequence[Mapping[str, Any]], p_key: str,
                             min_outcomes: int) -> JSON:
    """Brier of saying, for each row, the base rate of the outcomes settled by its session
    (``end_session <= session``), against the Brier of ``p_key`` on the same rows."""
    settled = sorted((r["end_session"], int(r["correct"])) for r in rows)
    ends = [e for e, _ in settled]
    cum = [0]
    for _, c in settled:
        cum.append(cum[-1] + c)
    ref, own, y = [], [], []
    for r in rows:
        if r.get(p_key) is None:
            continue
        k = bisect.bisect_right(ends, r["session"])
        if k < min_outcomes:
            continue
        ref.append(cum[k] / k)
        own.append(r[p_key])
        y.append(int(r["correct"]))
    b_ref, b_own = brier(ref, y), brier(own, y)
    return {"n": len(y), "brier": _r(b_own), "brier_climatology": _r(b_ref),
            "brier_skill": _r(1 - b_own / b_ref) if b_ref else None}


def _group(rows: Sequence[Mapping[str, Any]]) -> JSON:
    out = rate(sum(int(r["correct"]) for r in rows), len(rows))
    out["mean_return"] = _r(sum(r["forward_return"] for r in rows) / len(rows), 6) \
        if rows else None
    return out


def horizon_card(rows: Sequence[Mapping[str, Any]], band: float, *,
                 min_outcomes: int) -> JSON:
    """The scorecard of one horizon. ``rows``: ``{symbol, session, end_session, action,
    correct, forward_return, probability (calibrated or None), strength}``."""
    n = len(rows)
    calls = [r for r in rows if r["action"] in ("BUY", "SELL")]
    groups = {"BUY/SELL": calls, "BUY": [r for r in calls if r["action"] == "BUY"],
              "SELL": [r for r in calls if r["action"] == "SELL"],
              "HOLD": [r for r in rows if r["action"] == "HOLD"]}
    by_action = {k: _group(v) for k, v in groups.items()}
    signed = [r["forward_return"] * (1 if r["action"] == "BUY" else -1) for r in calls]
    by_action["BUY/SELL"]["mean_return_acting"] = _r(sum(signed) / len(signed), 6) \
        if signed else None

    ups = sum(r["forward_return"] > 0 for r in rows)
    downs = sum(r["forward_return"] < 0 for r in rows)
    quiet = sum(abs(r["forward_return"]) < band for r in rows)
    baselines = {"always_hold": rate(quiet, n), "always_buy": rate(ups, n),
                 "always_sell": rate(downs, n)}
    best = max(("HOLD", quiet), ("BUY", ups), ("SELL", downs), key=lambda t: t[1])
    baselines["majority"] = {"action": best[0], **rate(best[1], n)}
    baselines["buy_and_hold_mean_return"] = _r(sum(r["forward_return"] for r in rows) / n, 6) \
        if n else None

    scored = [r for r in rows if r.get("probability") is not None]
    y = [int(r["correct"]) for r in scored]
    probability = {
        "calibrated": forecast([r["probability"] for r in scored], y),
        "raw_strength": forecast([float(r["strength"]) for r in scored], y),
        "uncalibrated": n - len(scored),
        "walk_forward_climatology": walk_forward_climatology(rows, "probability",
                                                             min_outcomes),
    }
    if len(scored) < n:  # the raw strength of every row, calibrated or not: "before"
        probability["raw_strength_all"] = forecast(
            [float(r["strength"]) for r in rows], [int(r["correct"]) for r in rows])

    symbols: dict[str, JSON] = {}
    for s in sorted({r["symbol"] for r in rows}):
        mine = [r for r in rows if r["symbol"] == s]
        symbols[s] = {"BUY/SELL": _group([r for r in mine if r["action"] != "HOLD"]),
                      "HOLD": _group([r for r in mine if r["action"] == "HOLD"]),
                      "always_hold": rate(sum(abs(r["forward_return"]) < band for r in mine),
                                          len(mine))}
    return {"n": n, "hold_band": band, "by_action": by_action, "baselines": baselines,
            "probability": probability, "by_symbol": symbols}
