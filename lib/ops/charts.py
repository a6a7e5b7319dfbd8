"""Price charts: close with SMA20, RSI and MACD panes, stored predictions marked on the price.

Drawing is kept apart from fetching: :func:`draw` takes plain bar rows (as ``get_bars``
returns them) and prediction dicts (as ``history`` returns them) and writes a PNG, so it is
tested without any service. matplotlib (and its Agg backend, which needs no display) is
imported inside :func:`draw` only: importing this module costs nothing.

The indicators come from :mod:`trading.market.indicators`, the same code the services score with, so
the RSI on the chart is the RSI in ``trading market``. They are computed over every bar given
and only the last ``show_days`` are drawn, so the first bars on screen are warmed up.

A prediction is drawn at the close of its session's bar, not at its stored price: the bars
may come from another source than the prediction did (sample vs Yahoo), and a marker off the
line would mislead. Predictions for sessions outside the drawn bars are left out.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

JSON = dict[str, Any]

# Colours that stay distinct for the common colour-vision deficiencies (Okabe-Ito).
BUY_COLOUR, SELL_COLOUR, HOLD_COLOUR = "#009E73", "#D55E00", "#7F7F7F"
PRICE_COLOUR, SMA_COLOUR = "#0072B2", "#E69F00"
WIDTH_IN, HEIGHT_IN, DPI = 11.0, 8.0, 100  # 1100 x 800 pixels


def _session(p: JSON) -> str | None:
    s = p.get("session") or (p.get("created_at") or "")[:10]
    return s or None


def place_predictions(dates: list[str], closes: list[float],
                      predictions: list[JSON]) -> list[JSON]:
    """Each prediction whose session is one of ``dates``, at that bar's close; the newest
    prediction per session and action wins (a session predicted twice shows once)."""
    at = {d: i for i, d in enumerate(dates)}
    seen: set[tuple[str, str]] = set()
    out = []
    for p in predictions:  # newest first, as history returns them
        s = _session(p)
        if s not in at or (s, p.get("action")) in seen:
            continue
        seen.add((s, p.get("action")))
        i = at[s]
        out.append({"date": s, "index": i, "close": closes[i], "action": p.get("action"),
                    "confidence": p.get("confidence")})
    return sorted(out, key=lambda m: m["index"])


def summary(symbol: str, bars: list[JSON], predictions: list[JSON],
            show_days: int) -> JSON:
    """The numbers the chart shows, for ``--json`` and the title: last close, SMA20, RSI,
    MACD histogram, and the markers drawn. ``_series`` carries the arrays to :func:`draw`
    (computed once), which removes it before the summary is returned."""
    import numpy as np

    from trading.market import indicators

    rows = [b for b in bars if b.get("close") is not None]
    if len(rows) < 2:
        return {"symbol": symbol, "bars": len(rows), "markers": []}
    dates = [str(b["date"])[:10] for b in rows]
    close = np.array([float(b["close"]) for b in rows])
    sma20 = indicators.sma(close, 20)
    rsi = indicators.rsi(close, 14)
    macd, signal, hist = indicators.macd(close)
    first = _first_shown(dates, show_days)
    markers = place_predictions(dates[first:], list(close[first:]), predictions)

    def last(a):
        v = float(a[-1])
        return None if math.isnan(v) else round(v, 4)

    return {"symbol": symbol, "bars": len(dates) - first, "first": dates[first],
            "last": dates[-1], "close": last(close), "sma20": last(sma20), "rsi": last(rsi),
            "macd": last(macd), "macd_signal": last(signal), "macd_hist": last(hist),
            "markers": markers,
            "_series": (dates, close, sma20, rsi, macd, signal, hist, first)}


def _first_shown(dates: list[str], show_days: int) -> int:
    cutoff = (dt.date.fromisoformat(dates[-1]) - dt.timedelta(days=show_days - 1)).isoformat()
    for i, d in enumerate(dates):
        if d >= cutoff:
            return i
    return 0


def draw(path: Path, symbol: str, bars: list[JSON], predictions: list[JSON], *,
         show_days: int = 183, source: str = "") -> JSON:
    """Write the chart to ``path`` (PNG) and return :func:`summary` (without the series)."""
    import matplotlib

    matplotlib.use("Agg")  # no display; must precede pyplot
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    s = summary(symbol, bars, predictions, show_days)
    if s["bars"] < 2:
        from trading.errors import NotFound

        raise NotFound(f"{symbol}: too few bars to chart ({s['bars']})", symbol=symbol)
    dates, close, sma20, rsi, macd, signal, hist, first = s.pop("_series")
    x = [dt.date.fromisoformat(d) for d in dates[first:]]
    close, sma20, rsi = close[first:], sma20[first:], rsi[first:]
    macd, signal, hist = macd[first:], signal[first:], hist[first:]

    fig, (ax_p, ax_r, ax_m) = plt.subplots(
        3, 1, sharex=True, figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI,
        gridspec_kw={"height_ratios": [3.2, 1, 1.2], "hspace": 0.08})
    try:
        # -- price ------------------------------------------------------------------------
        ax_p.plot(x, close, color=PRICE_COLOUR, linewidth=1.6, label="close")
        ax_p.plot(x, sma20, color=SMA_COLOUR, linewidth=1.3, label="SMA 20")
        counts = {"BUY": 0, "SELL": 0, "HOLD": 0}
        for action, marker, colour, size, z in (("HOLD", "o", HOLD_COLOUR, 16, 3),
                                                ("BUY", "^", BUY_COLOUR, 110, 4),
                                                ("SELL", "v", SELL_COLOUR, 110, 4)):
            ms = [m for m in s["markers"] if m["action"] == action]
            counts[action] = len(ms)
            if ms:
                ax_p.scatter([x[m["index"]] for m in ms], [m["close"] for m in ms],
                             marker=marker, s=size, color=colour, edgecolors="black",
                             linewidths=0.6, zorder=z, label=f"{action} ({len(ms)})")
        last_pred = s["markers"][-1] if s["markers"] else None
        if last_pred and last_pred["action"] in ("BUY", "SELL"):
            ax_p.annotate(f"{last_pred['action']} {last_pred['confidence']:.2f}",
                          (x[last_pred["index"]], last_pred["close"]),
                          xytext=(0, 14 if last_pred["action"] == "BUY" else -18),
                          textcoords="offset points", ha="center", fontsize=9,
                          color=BUY_COLOUR if last_pred["action"] == "BUY" else SELL_COLOUR,
                          fontweight="bold")
        ax_p.set_ylabel("price")
        ax_p.grid(True, alpha=0.3)
        ax_p.legend(loc="best", fontsize=9, ncol=5, framealpha=0.85)
        title = f"{symbol}  close {s['close']:.2f} on {s['last']}"
        if s["rsi"] is not None:
            title += f"  RSI {s['rsi']:.1f}"
        if last_pred:
            title += (f"  last prediction {last_pred['action']} "
                      f"{last_pred['confidence']:.2f} ({last_pred['date']})")
        else:
            title += "  no stored predictions in range"
        ax_p.set_title(title, fontsize=12, loc="left", fontweight="bold")
        if source:
            fig.text(0.98, 0.005, f"bars: {source}", ha="right", va="bottom", fontsize=8,
                     color="#555555")

        # -- RSI --------------------------------------------------------------------------
        ax_r.plot(x, rsi, color="#CC79A7", linewidth=1.2)
        ax_r.axhspan(70, 100, color=SELL_COLOUR, alpha=0.08)
        ax_r.axhspan(0, 30, color=BUY_COLOUR, alpha=0.08)
        for level in (30, 70):
            ax_r.axhline(level, color="#555555", linewidth=0.6, linestyle="--")
        ax_r.set_ylim(0, 100)
        ax_r.set_yticks([30, 50, 70])
        ax_r.set_ylabel("RSI 14")
        ax_r.grid(True, alpha=0.3)
        ax_r.text(0.005, 0.9, "overbought > 70, oversold < 30", transform=ax_r.transAxes,
                  fontsize=8, va="top", color="#555555")

        # -- MACD -------------------------------------------------------------------------
        up = [h if h >= 0 else 0.0 for h in hist]  # NaN >= 0 is False: warm-up stays 0
        down = [h if h < 0 else 0.0 for h in hist]
        ax_m.bar(x, up, color=BUY_COLOUR, width=1.0, alpha=0.55, label="histogram +")
        ax_m.bar(x, down, color=SELL_COLOUR, width=1.0, alpha=0.55, label="histogram -")
        ax_m.plot(x, macd, color=PRICE_COLOUR, linewidth=1.1, label="MACD 12/26")
        ax_m.plot(x, signal, color=SMA_COLOUR, linewidth=1.1, label="signal 9")
        ax_m.axhline(0, color="black", linewidth=0.5)
        ax_m.set_ylabel("MACD")
        ax_m.grid(True, alpha=0.3)
        ax_m.legend(loc="best", fontsize=8, ncol=4, framealpha=0.85)

        locator = mdates.AutoDateLocator()
        ax_m.xaxis.set_major_locator(locator)
        ax_m.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        fig.subplots_adjust(left=0.07, right=0.98, top=0.95, bottom=0.07)
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
    s["counts"] = counts
    return s


def reliability_diagram(path: Path, report: JSON) -> None:
    """The reliability diagram of an accuracy report (``accuracy_report``): per horizon, the
    stated probability of being right against how often it was right, calibrated and raw
    strength, each point with its 95 % interval and sized by n; the diagonal is perfect."""
    import matplotlib

    matplotlib.use("Agg")  # no display; must precede pyplot
    import matplotlib.pyplot as plt

    horizons = list(report["horizons"].items())
    fig, axes = plt.subplots(1, len(horizons), figsize=(5.2 * len(horizons), 5.2), dpi=DPI,
                             squeeze=False)
    try:
        for ax, (h, card) in zip(axes[0], horizons):
            pr = card["probability"]
            ax.plot([0, 1], [0, 1], color="black", linewidth=0.7, linestyle="--",
                    label="perfectly calibrated")
            for key, colour, marker, label in (
                    ("calibrated", PRICE_COLOUR, "o", "calibrated probability"),
                    ("raw_strength", SELL_COLOUR, "s", "raw rules strength")):
                f = pr[key]
                pts = f.get("reliability") or []
                if not pts:
                    continue
                x = [b["mean_stated"] for b in pts]
                y = [b["hit_rate"] for b in pts]
                err = [[b["hit_rate"] - b["ci95"][0] for b in pts],
                       [b["ci95"][1] - b["hit_rate"] for b in pts]]
                ax.errorbar(x, y, yerr=err, color=colour, fmt="none", alpha=0.6, linewidth=1)
                ax.scatter(x, y, s=[12 + 60 * math.sqrt(b["n"] / max(1, f["n"])) * 3
                                    for b in pts], color=colour, marker=marker,
                           edgecolors="black", linewidths=0.5, zorder=3,
                           label=f"{label}: ECE {f['ece']:.3f}, Brier skill "
                                 f"{f['brier_skill']:+.3f}")
            base = pr["calibrated"].get("base_rate")
            if base is not None:
                ax.axhline(base, color=HOLD_COLOUR, linewidth=0.7,
                           label=f"base rate {base:.3f} (climatology)")
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1)
            ax.set_aspect("equal")
            ax.set_xlabel("stated probability of being right")
            ax.set_ylabel("observed share right (95% Wilson interval)")
            ax.set_title(f"after {h} session(s): n = {pr['calibrated']['n']} calibrated, "
                         f"{pr['uncalibrated']} uncalibrated", fontsize=10)
            ax.grid(True, alpha=0.3)
            ax.legend(loc="lower right", fontsize=8, framealpha=0.85)
        fig.tight_layout()
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
