"""What a trader is told: which stored predictions make an alert, the alert's words, the digest.

Everything here is computed from the store (the prediction as stored, its inputs, the one
before it, the outcomes), never from a live call, so a message rendered on a retry a day later
says what the first attempt would have said. No network and no Apprise here: the outbox
(:mod:`trading.signals.outbox`) keeps the messages, :mod:`trading.ops.notify` sends them.

Which predictions alert (``notify.send``), after the symbol filter (``notify.symbols``):

- ``changes`` (the default): the symbol's *call* differs from its previous prediction's (the
  previous live one from the same data source). A call is the action when it is a BUY or SELL
  at or above ``notify.min_confidence``, else HOLD; so HOLD -> BUY alerts, BUY -> BUY does not,
  and BUY -> HOLD alerts too (the BUY the trader was told about is withdrawn). A symbol's first
  prediction counts as a change from HOLD.
- ``signals``: every BUY or SELL at or above ``notify.min_confidence``.
- ``all``: every prediction.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

JSON = dict[str, Any]
MODES = ("changes", "signals", "all")
SIGNALS = ("BUY", "SELL")


class Rules:
    """The ``notify.*`` settings that decide what is sent (a plain class: see config.Setting)."""

    __slots__ = ("send", "min_confidence", "symbols", "link_base")

    def __init__(self, send: str = "changes", min_confidence: float = 0.0,
                 symbols: Sequence[str] = (), link_base: str = "") -> None:
        if send not in MODES:
            raise ValueError(f"notify.send must be one of {', '.join(MODES)}")
        from trading.market.symbols import normalize

        self.send, self.min_confidence = send, float(min_confidence)
        self.symbols = frozenset(normalize(s) for s in symbols)
        self.link_base = link_base.rstrip("/")

    @classmethod
    def from_config(cls, cfg: Any) -> Rules:
        return cls(cfg["notify.send"], cfg["notify.min_confidence"], cfg["notify.symbols"],
                   cfg["notify.link_base"])


class Message:
    """One rendered alert: ``title``, a plain-text ``body`` and the same in ``markdown``."""

    __slots__ = ("title", "body", "markdown", "symbol")

    def __init__(self, title: str, body: str, markdown: str, symbol: str | None = None) -> None:
        self.title, self.body, self.markdown, self.symbol = title, body, markdown, symbol


def call(action: str, confidence: float, rules: Rules) -> str:
    """What the trader acts on: BUY/SELL when at or above the minimum confidence, else HOLD."""
    if action in SIGNALS and confidence >= rules.min_confidence:
        return action
    return "HOLD"


def previous(db: Any, row: Mapping) -> Mapping | None:
    """The live prediction of the same symbol and data source just before ``row``."""
    return db.execute(
        "SELECT id, action, confidence FROM predictions WHERE symbol = ? AND source IS ? "
        "AND origin = 'live' AND id < ? ORDER BY id DESC LIMIT 1",
        (row["symbol"], row["source"], row["id"])).fetchone()


def decide(row: Mapping, before: Mapping | None, rules: Rules) -> str | None:
    """Why this stored prediction alerts (``"change"``, ``"signal"``, ``"all"``), or None."""
    if rules.symbols and row["symbol"] not in rules.symbols:
        return None
    now = call(row["action"], row["confidence"], rules)
    if rules.send == "all":
        return "all"
    if rules.send == "signals":
        return "signal" if now in SIGNALS else None
    was = "HOLD" if before is None else call(before["action"], before["confidence"], rules)
    return "change" if now != was else None


def for_event(db: Any, payload: Mapping, rules: Rules) -> Message | None:
    """The alert for one ``prediction`` event, or None when the rules say nothing to send.

    ``db`` is the store's connection (inside the outbox's transaction)."""
    pid = payload.get("id") if isinstance(payload, Mapping) else None
    if not isinstance(pid, int):
        return None
    row = db.execute("SELECT id, symbol, action, confidence, price, session, source, origin,"
                     " created_at, prediction, inputs FROM predictions WHERE id = ?",
                     (pid,)).fetchone()
    if row is None or row["origin"] != "live":
        return None
    before = previous(db, row)
    if decide(row, before, rules) is None:
        return None
    return render(row, before, rules)


# -- words -------------------------------------------------------------------------------------
def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _section(d: Any, key: str) -> Mapping:
    v = d.get(key) if isinstance(d, Mapping) else None
    return v if isinstance(v, Mapping) else {}


def reasons(p: Mapping, inputs: Mapping, limit: int = 3) -> list[str]:
    """The two or three components that pushed hardest toward the call, in words.

    A component's push is its weight times its distance from neutral (0.5); for a BUY the
    bullish pushes count, for a SELL the bearish ones, for a HOLD the largest either way."""
    comps = p.get("components") if isinstance(p.get("components"), Mapping) else {}
    weights = p.get("weights") if isinstance(p.get("weights"), Mapping) else {}
    market = _section(inputs, "market")
    sent = _section(inputs, "sentiment")
    model = _section(inputs, "model")
    words = {
        "technical": lambda c: "technical indicators {} ({:.2f}{})".format(
            "bullish" if c > 0.5 else "bearish", c,
            f"; RSI {p['rsi']:.0f}" if _num(p.get("rsi")) is not None else ""),
        "sentiment": lambda c: "news sentiment {} ({:+.2f}{})".format(
            "positive" if c > 0.5 else "negative", _num(sent.get("score")) or 0.0,
            f" over {sent['headline_count']} headlines"
            if isinstance(sent.get("headline_count"), int) else ""),
        "volume": lambda c: "volume {} ({:.2f})".format(
            "supports a rise" if c > 0.5 else "points down", c),
        "market": lambda c: "market {}{}".format(
            p.get("market_context") or ("bullish" if c > 0.5 else "bearish"),
            f" (index {_section(market, 'market_context')['trend_pct']:+.1f}%)"
            if _num(_section(market, "market_context").get("trend_pct")) is not None else ""),
        "model": lambda c: "model gives {:.0%} odds of a rise{}".format(
            c, f" ({model['version']})" if model.get("version") else ""),
    }
    pushes = []
    for name, c in comps.items():
        c, w = _num(c), _num(weights.get(name))
        if c is None or w is None or name not in words:
            continue
        pushes.append((w * (c - 0.5), name, c))
    action = p.get("action")
    if action == "BUY":
        chosen = sorted((x for x in pushes if x[0] > 0), reverse=True)
    elif action == "SELL":
        chosen = sorted(x for x in pushes if x[0] < 0)
    else:
        chosen = sorted(pushes, key=lambda x: abs(x[0]), reverse=True)
    out = [words[name](c) for _, name, c in chosen[:limit]]
    if p.get("data_stale"):
        out.append("some inputs are stale (served from cache)")
    if not out:  # nothing to weigh: fall back on the rules' own words
        out = [str(r) for r in (p.get("reasons") or [])[-2:]]
    return out


def _session_words(session: str | None) -> str:
    try:
        return f"{date.fromisoformat(str(session)):%a %d %b %Y}"
    except ValueError:
        return str(session)


def link(rules: Rules, symbol: str) -> str | None:
    return f"{rules.link_base}/symbol/{symbol}" if rules.link_base else None


def render(row: Mapping, before: Mapping | None, rules: Rules) -> Message:
    """The alert for one stored prediction (``row``: a predictions row)."""
    p = json.loads(row["prediction"])
    inputs = json.loads(row["inputs"] or "{}")
    symbol, action, conf = row["symbol"], row["action"], row["confidence"]
    now = call(action, conf, rules)
    was = None if before is None else call(before["action"], before["confidence"], rules)
    headline = f"{now} {symbol}" + (f" (was {was})" if was and was != now else "")
    if now != action:  # a BUY/SELL under the minimum: say what it really is
        detail = (f"{action} at confidence {conf:.2f}, below the {rules.min_confidence:.2f} "
                  "minimum for a signal")
    else:
        detail = f"confidence {conf:.2f}"
    price = _num(row["price"])
    where = (f"Price {price:,.2f}" if price is not None else "No price") + \
        f", based on the {_session_words(row['session'])} session"
    if row["source"] and row["source"] != "yahoo":  # synthetic or local data: say so
        where += f" ({row['source'].partition(':')[0]} data)"
    why = reasons(p, inputs)
    url = link(rules, symbol)
    text = [f"{headline}, {detail}", where, "Why:", *[f"- {w}" for w in why]]
    md = [f"**{headline}**, {detail}", where, "", "Why:", *[f"- {w}" for w in why]]
    if url:
        text.append(url)
        md += ["", f"[{symbol} on the dashboard]({url})"]
    return Message(title=headline, body="\n".join(text), markdown="\n".join(md), symbol=symbol)


# -- the daily digest ------------------------------------------------------------------------
def _rate(d: Any) -> str | None:
    """``54% of 120 [48-60%]`` from a stats dict of either report shape (hit_rate or rate)."""
    if not isinstance(d, Mapping):
        return None
    r = _num(d.get("hit_rate", d.get("rate")))
    n = d.get("n")
    if r is None or not isinstance(n, int):
        return None
    lo, hi = _num(d.get("low", d.get("lower"))), _num(d.get("high", d.get("upper")))
    ci = d.get("ci95") or d.get("wilson") or d.get("interval")  # the scorecard (issue 16)
    if isinstance(ci, Sequence) and len(ci) == 2 and all(_num(x) is not None for x in ci):
        lo, hi = float(ci[0]), float(ci[1])
    return (f"{r:.0%} of {n}" + (f" [{lo:.0%}-{hi:.0%}]" if lo is not None and hi is not None
                                 else "")
            + (" (too few to judge)" if d.get("too_few") else ""))


def hit_rate_lines(report: Mapping) -> list[str]:
    """The running hit rates per horizon, each beside the baselines the report gives."""
    lines = []
    for h, card in sorted((report.get("horizons") or {}).items()):
        if not isinstance(card, Mapping):
            continue
        parts = []
        overall = _rate(card.get("overall"))
        if overall:
            parts.append(f"all {overall}")
        for action, stats in (card.get("by_action") or {}).items():
            text = _rate(stats)
            if text:
                parts.append(f"{action} {text}")
        base = []
        for name, stats in (card.get("baselines") or {}).items():
            text = _rate(stats)
            if text:
                label = name.replace("_", " ")
                if isinstance(stats, Mapping) and stats.get("action"):
                    label += f" ({stats['action']})"
                base.append(f"{label} {text}")
        unit = "session" if str(h) == "1" else "sessions"
        line = f"- {h} {unit}: " + ("; ".join(parts) or "nothing scored yet")
        if base:
            line += "\n  baselines: " + "; ".join(base)
        lines.append(line)
    return lines or ["- nothing scored yet"]


def digest(db: Any, day: date, report: Mapping, rules: Rules) -> Message:
    """The day's digest: its calls, the outcomes scored that day, the running hit rates.

    ``day`` is a Sydney date; ``report`` is the accuracy report of live predictions
    (:func:`trading.signals.outcomes.accuracy`)."""
    from trading.signals.ledger import sydney_date

    rows = db.execute(
        "SELECT symbol, action, confidence, price, created_at FROM predictions "
        "WHERE origin = 'live' AND created_at >= ? AND created_at < ? ORDER BY id",
        _utc_bounds(day)).fetchall()
    rows = [r for r in rows if sydney_date(r["created_at"]) == day.isoformat()]
    last: dict[str, Any] = {}
    for r in rows:
        last[r["symbol"]] = r
    signals = [r for r in rows if call(r["action"], r["confidence"], rules) in SIGNALS]
    if rules.symbols:
        signals = [r for r in signals if r["symbol"] in rules.symbols]
    scored = db.execute(
        "SELECT p.symbol, p.action, o.horizon, o.forward_return, o.correct, o.evaluated_at "
        "FROM outcomes o JOIN predictions p ON p.id = o.prediction_id "
        "WHERE p.origin = 'live' AND o.evaluated_at >= ? AND o.evaluated_at < ? "
        "ORDER BY o.horizon, p.symbol", _utc_bounds(day)).fetchall()
    scored = [r for r in scored if sydney_date(r["evaluated_at"]) == day.isoformat()]
    right = sum(r["correct"] for r in scored)

    title = (f"ASX digest {day:%a %d %b}: {len(signals)} signal(s), "
             f"{len(scored)} outcome(s) scored")
    lines = [f"{len(rows)} prediction(s) today for {len(last)} symbol(s); "
             f"{len(signals)} BUY/SELL signal(s)"]
    for r in signals[:20]:
        price = _num(r["price"])
        lines.append(f"- {r['action']} {r['symbol']} {r['confidence']:.2f}"
                     + (f" at {price:,.2f}" if price is not None else ""))
    if len(signals) > 20:
        lines.append(f"- and {len(signals) - 20} more")
    closing = ", ".join(f"{s} {r['action']}" for s, r in sorted(last.items()))
    if closing:
        lines.append(f"Latest calls: {closing}")
    lines.append("")
    lines.append(f"Outcomes scored today: {len(scored)}"
                 + (f", {right} right ({right / len(scored):.0%})" if scored else ""))
    for r in scored[:20]:
        lines.append(f"- {r['symbol']} {r['action']} after {r['horizon']}: "
                     f"{r['forward_return']:+.2%} {'right' if r['correct'] else 'wrong'}")
    if len(scored) > 20:
        lines.append(f"- and {len(scored) - 20} more")
    lines.append("")
    lines.append("Hit rates so far (live predictions):")
    lines += hit_rate_lines(report)
    if rules.link_base:
        lines += ["", f"{rules.link_base}/"]
    body = "\n".join(lines)
    return Message(title=title, body=body, markdown=body)


def _utc_bounds(day: date) -> tuple[str, str]:
    """A UTC window surely containing the Sydney ``day`` (filtered exactly afterwards)."""
    from datetime import timedelta

    return ((day - timedelta(days=1)).isoformat(), (day + timedelta(days=2)).isoformat())
