"""Choose the default predictor by the rule in docs/choosing-the-predictor.md, and score the
final block once.

    .venv/bin/python bench/choose_predictor.py [--long DIR] [--recent DIR] [--out FILE.json]
        [--phase dev|final|both]

Defaults: the twenty long histories in ../shared/data/asx-history (final block from
2014-01-01) and the seven recent ones in tests/data/asx-daily (final block from 2025-07-01).
Prints the comparison table (markdown) for each phase and horizon, which candidates qualify
and the one the rule picks; ``--out`` keeps every figure as JSON.

Every candidate is judged on the same symbol-sessions, walk-forward (yearly refits, 5-session
purge and embargo), with intervals from a block bootstrap over sessions
(:mod:`trading.learning.evaluation`). Takes a few minutes on two cores.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
FINAL_FROM = {"long": "2014-01-01", "recent": "2025-07-01"}
MIN_TRAIN_ROWS = 5000
MARGIN = 0.05          # a model's call: P(up) or P(down) this far above its base rate
CANDIDATES = ("rules", "model", "crosssection", "always_hold", "always_buy", "base_rate")
# Not a candidate: what the product does when none qualifies (the rules' calibrated probability
# of a HOLD, no directional call), reported beside them so its ECE is on the table too.
NO_CALL = "no_call"
ORDER = {"always_hold": 0, "always_buy": 0, "base_rate": 0, "rules": 1, "model": 2,
         "crosssection": 3}
log = logging.getLogger("choose")


def load(long_dir: Path, recent_dir: Path):
    from trading.market.reading import read_csv
    from trading.market.summary import Bars

    histories, group, index_parts = {}, {}, []
    for name, folder in (("long", long_dir), ("recent", recent_dir)):
        for path in sorted(folder.glob("*.csv")):
            bars, _ = read_csv(path)
            symbol = path.name[:-4]
            if symbol.startswith("^"):
                index_parts.append(bars)
            else:
                histories[symbol], group[symbol] = bars, name
    rows = sorted({d[:10]: (b.open[i], b.high[i], b.low[i], b.close[i], b.volume[i])
                   for b in index_parts for i, d in enumerate(b.dates)}.items())
    index = Bars([d for d, _ in rows], *zip(*[v for _, v in rows]))
    return histories, group, index


def rules_columns(histories, index, cfg, panel):
    """The rules' call, score and volatility, and the model's features, per panel row."""
    from trading.learning.features import FEATURE_NAMES, vector
    from trading.market.periods import LOOKBACK_SESSIONS, WARMUP_SESSIONS
    from trading.market.series import IndexContext, series_summaries
    from trading.signals.rules import decide

    n = len(panel.dates)
    action = np.zeros(n, dtype=int)
    score = np.full(n, np.nan)
    vol = np.full(n, np.nan)
    feats = np.full((n, len(FEATURE_NAMES)), np.nan)
    has = np.zeros(n, dtype=bool)
    context_at = IndexContext(index, cfg, LOOKBACK_SESSIONS)
    code = {"BUY": 1, "SELL": -1, "HOLD": 0}
    for symbol, bars in sorted(histories.items()):
        t = time.perf_counter()
        for i, market in series_summaries(symbol, bars, context_at, lookback=LOOKBACK_SESSIONS,
                                          warmup=WARMUP_SESSIONS):
            row = panel.index[(symbol, bars.dates[i][:10])]
            d = decide({**market, "stale": False, "age_s": 0}, None, None, cfg)
            action[row], score[row], has[row] = code[d["action"]], d["score"], True
            v = (market.get("technical") or {}).get("volatility_pct")
            vol[row] = v if isinstance(v, (int, float)) and v > 0 else np.nan
            feats[row] = vector(market)
        log.info("rules %s: %.1f s", symbol, time.perf_counter() - t)
    return {"action": action, "score": score, "vol": vol, "features": feats, "has": has}


class Study:
    def __init__(self, panel, rules, group, calendar):
        self.panel, self.rules, self.calendar = panel, rules, calendar
        pos = {d: k for k, d in enumerate(calendar)}
        self.pos = np.array([pos[d] for d in panel.dates])
        dates = np.array(panel.dates)
        grp = np.array([group[s] for s in panel.symbols])
        cut = np.where(grp == "long", FINAL_FROM["long"], FINAL_FROM["recent"])
        self.final = dates >= cut
        self.common = rules["has"] & np.isfinite(panel.forward[1]) & np.isfinite(
            panel.forward[5])

    # -- fitting -------------------------------------------------------------------------------
    def run(self, phase: str, folds, horizon: int) -> dict:
        from trading.learning.evaluation import Calls, session_means
        from trading.signals.outcomes import HOLD_BAND

        band = HOLD_BAND[horizon]
        ret = self.panel.forward[horizon]
        usable = self.common if phase == "final" else self.common & ~self.final
        wanted = self.common & (self.final if phase == "final" else ~self.final)
        out = {name: [] for name in (*CANDIDATES, NO_CALL)}
        rows_all = []
        for fold in folds:
            train = np.flatnonzero(usable & (self.pos < fold.train_stop))
            score = np.flatnonzero(wanted & (self.pos >= fold.start) & (self.pos < fold.stop))
            if not len(score) or len(train) < MIN_TRAIN_ROWS:
                continue
            t = time.perf_counter()
            made = self.fold(train, score, ret, band, horizon)
            log.info("%s h=%d %d: %d train, %d scored, %.1f s", phase, horizon, fold.year,
                     len(train), len(score), time.perf_counter() - t)
            rows_all.append(score)
            for name in (*CANDIDATES, NO_CALL):
                out[name].append(made[name])
        rows = np.concatenate(rows_all)
        r = ret[rows]
        drift = session_means(self.pos[rows], r)
        calls = {}
        for name in (*CANDIDATES, NO_CALL):
            action = np.concatenate([m[0] for m in out[name]])
            calls[name] = Calls(self.pos[rows], action, np.concatenate([m[1] for m in out[name]]),
                                _right(action, r, band), np.concatenate([m[2] for m in out[name]]),
                                r, drift)
        return calls

    def fold(self, train, score, ret, band, horizon):
        from trading.signals.calibration import features as cal_features
        from trading.signals.calibration import fit_matrix, independent_weights

        r_train = ret[train]
        labels = {"up": r_train > 0, "down": r_train < 0, "quiet": np.abs(r_train) < band}
        base = {k: float(v.mean()) for k, v in labels.items()}
        made = {}
        # the rules, calibrated as shipped (three Platt fits on score and volatility)
        cal = {}
        feats = {k: np.array([[*cal_features(s, v).values()] for s, v in
                              zip(self.rules["score"][rows], self.rules["vol"][rows])])
                 for k, rows in (("train", train), ("score", score))}
        columns = {"lean": 0, "strength": 1, "log_volatility": 2}
        weights = np.array(independent_weights(self.pos[train].tolist(), horizon))
        inputs = {"up": ("lean",), "down": ("lean",), "quiet": ("strength", "log_volatility")}
        for kind, names in inputs.items():
            cols = [columns[n] for n in names]
            cal[kind] = _apply(fit_matrix(feats["train"][:, cols], labels[kind].astype(int),
                                          names, weights=weights), feats["score"][:, cols])
        action = self.rules["action"][score]
        made["rules"] = _pick(action, cal, base)
        made[NO_CALL] = _pick(np.zeros_like(action), cal, base)
        # the two models
        made["model"] = self.model(self.rules["features"], train, score, labels, base,
                                   "logistic")
        made["crosssection"] = self.model(self.panel.x, train, score, labels, base, "hgb")
        n = len(score)
        kinds = {"up": 1, "down": -1, "quiet": 0}
        made["always_hold"] = (np.zeros(n, dtype=int), np.full(n, base["quiet"]),
                               np.full(n, base["quiet"]))
        made["always_buy"] = (np.ones(n, dtype=int), np.full(n, base["up"]),
                              np.full(n, base["up"]))
        top = max(base, key=base.get)
        made["base_rate"] = (np.full(n, kinds[top], dtype=int), np.full(n, base[top]),
                             np.full(n, base[top]))
        return made

    def model(self, x, train, score, labels, base, kind):
        """Three classifiers fitted on the first four fifths of the training sessions, Platt
        scaled on the last fifth; the call as docs/choosing-the-predictor.md fixes it."""
        from trading.signals.calibration import fit_matrix

        sessions = self.pos[train]
        cut = np.quantile(np.unique(sessions), 0.8)
        inner = sessions < cut - 5
        outer = sessions >= cut
        probs = {}
        for name, y in labels.items():
            fitted = _fit(kind, x[train][inner], y[inner].astype(int))
            raw = _raw(fitted, kind, x[train][outer])
            platt = fit_matrix(_logit(raw)[:, None], y[outer].astype(int), ("logit",))
            probs[name] = _apply(platt, _logit(_raw(fitted, kind, x[score]))[:, None])
        up, down = probs["up"], probs["down"]
        action = np.where((up - base["up"] >= MARGIN) & (up > down), 1,
                          np.where((down - base["down"] >= MARGIN) & (down > up), -1, 0))
        return _pick(action, probs, base)


def _fit(kind, x, y):
    if kind == "logistic":
        from trading.learning.features import FEATURE_NAMES
        from trading.signals.calibration import fit_matrix
        return fit_matrix(x, y, FEATURE_NAMES)
    from sklearn.ensemble import HistGradientBoostingClassifier
    return HistGradientBoostingClassifier(
        learning_rate=0.05, max_iter=200, max_leaf_nodes=15, min_samples_leaf=200,
        l2_regularization=1.0, early_stopping=False, random_state=0).fit(x, y)


def _raw(fitted, kind, x):
    if kind == "logistic":
        return _apply(fitted, x)
    return fitted.predict_proba(x)[:, 1]


def _logit(p):
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def _apply(fit, x):
    """A :class:`trading.signals.calibration.Logistic` on a matrix (NaN: the input's mean)."""
    mean = np.array(fit.mean)
    x = np.where(np.isnan(x), mean, x)
    z = fit.intercept + ((x - mean) / np.array(fit.scale)) @ np.array(fit.coef)
    return np.clip(1 / (1 + np.exp(-z)), 1e-6, 1 - 1e-6)


def _pick(action, probs, base):
    p = np.where(action > 0, probs["up"], np.where(action < 0, probs["down"], probs["quiet"]))
    b = np.where(action > 0, base["up"], np.where(action < 0, base["down"], base["quiet"]))
    return action.astype(int), p, b


def _right(action, r, band):
    from trading.learning.evaluation import right_of
    return right_of(action, r, band)


# -- the table ---------------------------------------------------------------------------------
def _pct(v, digits=1):
    return "-" if v is None else f"{100 * v:.{digits}f} %"


def _ci(v, ci, scale=1.0, digits=3, unit=""):
    if v is None:
        return "-"
    text = f"{scale * v:+.{digits}f}{unit}"
    return text + (f" ({scale * ci[0]:+.{digits}f} to {scale * ci[1]:+.{digits}f})" if ci else "")


def table(cards: dict) -> str:
    head = ("| candidate | n | Brier skill (95 % CI) | log-loss skill (95 % CI) | ECE | "
            "acted | BUY/SELL right vs always-BUY | return/call after costs vs held | "
            "beyond the drift, bps (95 % CI) |")
    lines = [head, "|" + "---|" * 9]
    for name, c in cards.items():
        lines.append(
            f"| {name} | {c['n']:,} | {_ci(c['brier_skill'], c['brier_skill_ci'])} | "
            f"{_ci(c['log_loss_skill'], c['log_loss_skill_ci'])} | "
            f"{'-' if c['ece'] is None else format(c['ece'], '.3f')} | "
            f"{c['acted']:,} | {_pct(c['hit_rate'])} vs {_pct(c['always_buy_hit_rate'])} | "
            f"{_pct(c['return_after_costs'], 2)} vs {_pct(c['buy_and_hold'], 2)} | "
            f"{_ci(c['edge'], c['edge_ci'], 1e4, 1)} |")
    return "\n".join(lines)


def choose(cards: dict) -> tuple[str | None, list[str]]:
    """The rule: qualified candidates, then the highest Brier skill (within 0.002: simpler)."""
    from trading.learning.evaluation import qualifies

    ok = [n for n, c in cards.items() if n in ORDER and qualifies(c)]
    if not ok:
        return None, ok
    best = max(cards[n]["brier_skill"] for n in ok)
    close = [n for n in ok if cards[n]["brier_skill"] >= best - 0.002]
    return min(close, key=lambda n: ORDER[n]), ok


def main(argv=None) -> int:
    from trading import config
    from trading.learning import crosssection
    from trading.learning.evaluation import scorecard, yearly_folds

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--long", type=Path, default=ROOT.parent / "shared/data/asx-history")
    ap.add_argument("--recent", type=Path, default=ROOT / "tests/data/asx-daily")
    ap.add_argument("--phase", choices=("dev", "final", "both"), default="dev")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    started = time.perf_counter()
    cfg = config.load(environ={}, path=Path("/nonexistent/config.toml"), install=None)
    histories, group, index = load(args.long, args.recent)
    panel = crosssection.panel(histories, index)
    rules = rules_columns(histories, index, cfg, panel)
    calendar = sorted(set(panel.dates))
    study = Study(panel, rules, group, calendar)
    first = next(f.year for f in yearly_folds(calendar, int(calendar[0][:4]))
                 if np.count_nonzero(study.common & (study.pos < f.train_stop))
                 >= MIN_TRAIN_ROWS)
    folds = yearly_folds(calendar, first)
    report = {"first_refit_year": first, "rows": int(len(panel.dates)),
              "common_rows": int(study.common.sum()),
              "dropped_rows": int((~study.common).sum()), "phases": {}}
    phases = ("dev", "final") if args.phase == "both" else (args.phase,)
    for phase in phases:
        report["phases"][phase] = {}
        for h in (1, 5):
            calls = study.run(phase, folds, h)
            cards = {name: scorecard(c, len(calendar)) for name, c in calls.items()}
            report["phases"][phase][h] = cards
            print(f"\n### {phase}, {h}-session horizon\n\n{table(cards)}")
        if phase == "dev":
            chosen, qualified = choose(report["phases"]["dev"][1])
            report.update(chosen=chosen, qualified=qualified)
            print(f"\nqualified at 1 session: {', '.join(qualified) or 'none'}; "
                  f"the rule picks: {chosen or 'none (no edge shown)'}")
    report["seconds"] = round(time.perf_counter() - started, 1)
    print(f"\n{report['rows']:,} symbol-sessions, {report['common_rows']:,} scoreable by every "
          f"candidate ({report['dropped_rows']:,} dropped for all); first refit "
          f"{first}-01-01; {report['seconds']} s")
    if args.out:
        args.out.write_text(json.dumps(report, indent=1, default=_json))
    return 0


def _json(v):
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    raise TypeError(type(v))


if __name__ == "__main__":
    sys.exit(main())
