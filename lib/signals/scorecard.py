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
- **the edge** (:func:`edge`): the mean return per BUY/SELL call after costs beyond the
  market's drift over the same sessions, with a block-bootstrap interval; an edge is
  "shown" only when that interval is wholly above zero;
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
    import numpy as np

    p, y = np.asarray(p, dtype=float), np.asarray(y, dtype=float)
    if not len(p):
        return None
    return float(np.sum((p - y) ** 2) / len(p))


def reliability(p: Sequence[float], y: Sequence[int], bins: int = BINS) -> list[JSON]:
    """Per equal-width bin of the stated probability: n, mean stated, observed rate, CI.

    A bin holds ``lo <= p < hi`` with the edges ``k / bins`` (the last bin holds 1.0 too);
    a probability outside 0..1 is in none."""
    import numpy as np

    p, y = np.asarray(p, dtype=float), np.asarray(y, dtype=float)
    edges = [k / bins for k in range(bins + 1)]
    k = np.searchsorted(edges, p, side="right") - 1
    k[p == 1.0] = bins - 1
    inside = (k >= 0) & (k < bins)
    k = k[inside]
    n = np.bincount(k, minlength=bins)
    hits = np.bincount(k, weights=y[inside], minlength=bins)
    stated = np.bincount(k, weights=p[inside], minlength=bins)
    return [{"bin": f"{edges[b]:.1f}-{edges[b + 1]:.1f}", "mean_stated": _r(stated[b] / n[b]),
             **rate(int(hits[b]), int(n[b]))} for b in range(bins) if n[b]]


def ece(p: Sequence[float], y: Sequence[int], bins: int = BINS) -> float | None:
    """Expected calibration error: the n-weighted mean |stated - observed| over the bins."""
    if not len(p):
        return None
    return _ece(reliability(p, y, bins), len(p))


def _ece(table: list[JSON], n: int) -> float:
    return sum(b["n"] * abs(b["mean_stated"] - b["hit_rate"]) for b in table) / n


def forecast(p: Sequence[float], y: Sequence[int]) -> JSON:
    """Brier, climatology, skill, ECE and the reliability table of probabilities ``p``."""
    import numpy as np

    p, y = np.asarray(p, dtype=float), np.asarray(y, dtype=float)
    n = len(p)
    if not n:
        return {"n": 0, "brier": None, "base_rate": None, "brier_climatology": None,
                "brier_skill": None, "ece": None, "reliability": []}
    b = brier(p, y)
    base = int(y.sum()) / n
    clim = float(np.sum((base - y) ** 2) / n)
    table = reliability(p, y)
    return {"n": n, "brier": _r(b), "base_rate": _r(base), "brier_climatology": _r(clim),
            "brier_skill": _r(1 - b / clim) if clim else None, "ece": _r(_ece(table, n)),
            "reliability": table}


def walk_forward_climatology(session, end_session, correct, p, min_outcomes: int,
                             sessions=None) -> JSON:
    """Brier of saying, for each row, the base rate of the outcomes settled by its session
    (``end_session <= session``), against the Brier of its probability ``p`` (NaN: none) on
    the same rows. Arrays, one entry per row; sessions as numbers that sort as the sessions
    do. ``sessions``, when given, is ``np.unique(session, return_inverse=True)``: the
    outcomes settled by each distinct session are then looked up once, a few thousand
    searches where a row each was a million."""
    import numpy as np

    order = np.argsort(end_session, kind="stable")
    ends = end_session[order]
    cum = np.concatenate(([0], np.cumsum(correct[order], dtype=np.int64)))
    has = ~np.isnan(p)
    if sessions is None:
        k = np.searchsorted(ends, session[has], side="right")
    else:
        days, at = sessions
        k = np.searchsorted(ends, days, side="right")[at[has]]
    keep = k >= min_outcomes
    k = k[keep]
    y = correct[has][keep].astype(float)
    b_ref, b_own = brier(cum[k] / k, y), brier(p[has][keep], y)
    return {"n": len(y), "brier": _r(b_own), "brier_climatology": _r(b_ref),
            "brier_skill": _r(1 - b_own / b_ref) if b_ref else None}


def _group(hits, n, total_return) -> JSON:
    """``rate`` of ``hits`` in ``n`` rows, and their mean return (their returns sum to
    ``total_return``)."""
    n = int(n)
    out = rate(int(hits), n)
    out["mean_return"] = _r(total_return / n, 6) if n else None
    return out


def horizon_card(rows: Mapping[str, Any], band: float, *, min_outcomes: int,
                 symbols: Sequence[str]) -> JSON:
    """The scorecard of one horizon. ``rows``: numpy arrays, one entry per scored
    prediction: ``symbol`` (an index into ``symbols``, which is sorted), ``session`` and
    ``end_session`` (numbers that sort as the sessions do), ``action`` (bytes:
    ``b"BUY"``...), ``correct`` (bool), ``forward_return``, ``probability`` (calibrated; NaN:
    none) and ``strength``; and ``sessions``, if the caller has it (``np.unique(session,
    return_inverse=True)``, found more cheaply than a sort of these rows).

    Arrays rather than a dict per row: a store of a million replayed predictions has two
    million scored rows, and a pass of Python over them per figure was most of
    ``trading report``'s time (issue 26)."""
    import numpy as np

    action, correct, ret = rows["action"], rows["correct"], rows["forward_return"]
    n = len(action)
    buy, sell, hold = action == b"BUY", action == b"SELL", action == b"HOLD"
    calls = buy | sell
    by_action = {k: _group(correct[m].sum(), m.sum(), ret[m].sum())
                 for k, m in (("BUY/SELL", calls), ("BUY", buy), ("SELL", sell),
                              ("HOLD", hold))}
    signed = np.where(buy, ret, -ret)[calls]
    by_action["BUY/SELL"]["mean_return_acting"] = _r(signed.sum() / len(signed), 6) \
        if len(signed) else None

    ups, downs = int((ret > 0).sum()), int((ret < 0).sum())
    quiet = np.abs(ret) < band
    baselines = {"always_hold": rate(int(quiet.sum()), n), "always_buy": rate(ups, n),
                 "always_sell": rate(downs, n)}
    best = max(("HOLD", int(quiet.sum())), ("BUY", ups), ("SELL", downs), key=lambda t: t[1])
    baselines["majority"] = {"action": best[0], **rate(best[1], n)}
    baselines["buy_and_hold_mean_return"] = _r(ret.sum() / n, 6) if n else None

    # The distinct sessions, found once (a sort of every row) for the edge and the
    # walk-forward climatology alike.
    sessions = rows.get("sessions")
    if sessions is None:
        sessions = np.unique(rows["session"], return_inverse=True)
    p, strength = rows["probability"], rows["strength"]
    scored = ~np.isnan(p)
    y = correct[scored]
    probability = {
        "calibrated": forecast(p[scored], y),
        "raw_strength": forecast(strength[scored], y),
        "uncalibrated": n - int(scored.sum()),
        "walk_forward_climatology": walk_forward_climatology(
            rows["session"], rows["end_session"], correct, p, min_outcomes, sessions),
    }
    if scored.sum() < n:  # the raw strength of every row, calibrated or not: "before"
        probability["raw_strength_all"] = forecast(strength, correct)

    code, m = rows["symbol"], len(symbols)

    def per_symbol(mask):
        c = code[mask]
        return (np.bincount(c, weights=correct[mask], minlength=m),
                np.bincount(c, minlength=m), np.bincount(c, weights=ret[mask], minlength=m))

    acting, holding = per_symbol(~hold), per_symbol(hold)
    everyone = np.bincount(code, minlength=m)
    quiet_n = np.bincount(code[quiet], minlength=m)
    by_symbol = {symbols[s]: {"BUY/SELL": _group(*(a[s] for a in acting)),
                              "HOLD": _group(*(a[s] for a in holding)),
                              "always_hold": rate(int(quiet_n[s]), int(everyone[s]))}
                 for s in np.flatnonzero(everyone)}
    return {"n": n, "hold_band": band, "by_action": by_action, "baselines": baselines,
            "edge": edge(rows["session"], buy, sell, ret, sessions),
            "probability": probability, "by_symbol": by_symbol}


def edge(session, buy, sell, ret, sessions=None) -> JSON:
    """Whether acting on the BUY/SELL calls beat holding: the mean return per call after
    costs (:data:`trading.learning.evaluation.COST` a side) beyond the market's drift (the mean
    return of every scored symbol of the call's session), with its 95 % interval from a block
    bootstrap over sessions (docs/choosing-the-predictor.md). ``shown`` only when the whole
    interval is above zero. ``sessions``: ``np.unique(session, return_inverse=True)`` if the
    caller has it."""
    import numpy as np

    from trading.learning.evaluation import COST, block_interval, session_means

    calls = buy | sell
    days, at = np.unique(session, return_inverse=True) if sessions is None else sessions
    drift = session_means(at, ret)
    beyond = np.where(buy, ret, -ret) - 2 * COST - drift
    n = int(calls.sum())
    # the sessions with a call: a count per session, not a sort of the calls
    out: JSON = {"calls": n,
                 "sessions": int(np.count_nonzero(np.bincount(at[calls]))) if n else 0,
                 "cost_per_side": COST, "mean_beyond_drift": None, "ci95": None,
                 "shown": False}
    if n:
        out["mean_beyond_drift"] = _r(float(beyond[calls].mean()), 6)
        ci = block_interval(at[calls], beyond[calls], len(days))
        out["ci95"] = None if ci is None else [_r(ci[0], 6), _r(ci[1], 6)]
        out["shown"] = bool(ci is not None and n >= MIN_N and ci[0] > 0)
    return out


def headlines(report: Mapping[str, Any]) -> list[str]:
    """The report's first lines, one per predictor, never pooled: in words, whether acting on
    its BUY/SELL calls has shown an edge after costs, with n and the interval (the one-session
    horizon the default was chosen on; docs/choosing-the-predictor.md)."""
    out = []
    for name, cards in sorted((report.get("by_predictor") or {}).items()):
        card = cards.get("1") or next(iter(cards.values()), None)
        if not card or "edge" not in card:
            continue
        e, h = card["edge"], "1" if "1" in cards else next(iter(cards))
        if not e["calls"]:
            out.append(f"{name}: no edge shown: no BUY/SELL calls to act on in {card['n']:,} "
                       f"scored predictions" + (" (the built-in rules make none unless "
                                               "directional_calls is set: "
                                               "docs/choosing-the-predictor.md)"
                                               if name.startswith("trading.signals.rules:")
                                               else ""))
            continue
        ci = e["ci95"]
        verdict = "edge shown" if e["shown"] else "no edge shown"
        out.append(f"{name}: {verdict}: {e['calls']:,} BUY/SELL calls returned "
                   f"{e['mean_beyond_drift'] * 1e4:+.1f} bps a call after costs beyond the "
                   f"market's drift after {h} session(s) (95% interval "
                   + (f"{ci[0] * 1e4:+.1f} to {ci[1] * 1e4:+.1f} bps" if ci else "none")
                   + f"; block bootstrap over {e['sessions']:,} sessions"
                   + (f"; too few calls to judge, under {MIN_N}" if e["calls"] < MIN_N else "")
                   + ")")
    return out
