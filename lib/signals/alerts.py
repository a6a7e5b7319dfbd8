"""What a trader is told: which predictions of a run make an alert, the alert's words, the digest.

This module is long (about 500 lines) because the alert's words, a withdrawal's and the digest's
are one vocabulary and are read together.

**One stream.** Alerts and the digest come from the live job stream only: the predictions of
the runs recorded in ``alert_runs`` (migration 0015), which are ``trading job predict``'s
runs and ``trading predict --notify``'s. A hand-run ``trading predict`` is shown on the
terminal and never queued for a later job; a replay, a backtest or another source's run is
never alerted on either. :func:`trading.ops.notify.queue_run` records a run and plans it.

**Per run, the net change.** For each symbol the run predicted (a symbol the run failed on gets
nothing) and each URL, after the symbol filter (``notify.symbols``), ``notify.send`` decides:

- ``changes`` (the default): the run's *call* differs from the call of the last alert **sent**
  to that URL for the symbol (HOLD when none ever was). A call is the action when it is a BUY
  or SELL at or above ``notify.min_confidence``, else HOLD. Intermediate predictions do not
  count: BUY (sent) -> HOLD -> BUY between two alerts sends nothing, and ten hand-run
  predictions between two jobs change nothing.
- ``signals``: every BUY or SELL call of the run.
- ``all``: every prediction of the run.

A message still waiting for its URL (the endpoint was down) when a newer run speaks for the
same symbol is ``superseded``, never sent: one run, one message per symbol at most, and never
a stale one after a fresh one.

**Apprise types** (:func:`notify_type`): a BUY is ``info``; a SELL is ``warning``; a
withdrawal (a BUY or SELL told before, HOLD now) is ``warning`` too, since the trader may hold
a position on the word now withdrawn and should look again; a HOLD sent because
``notify.send = all`` and the digest are ``info``. A withdrawal says why: the call now (and
its confidence against the minimum), what moved since the alert it withdraws, and the reasons
for the call now.

Everything here is computed from the store (the prediction as stored, its inputs, the alert
it follows), never from a live call, so a message rendered on a retry says what the first
attempt would have said. No network and no Apprise here: the outbox
(:mod:`trading.signals.outbox`) keeps the messages, :mod:`trading.ops.notify` sends them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timezone
from typing import Any

JSON = dict[str, Any]
MODES = ("changes", "signals", "all")
SIGNALS = ("BUY", "SELL")
PREDICTION_COLUMNS = ("id, symbol, action, confidence, price, session, source, origin, run_id, "
                      "created_at, prediction, inputs")


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
    """One rendered alert: ``title``, a plain-text ``body`` and the same in ``markdown``; for a
    prediction alert the ``call`` it tells and the ``prediction_id``; Apprise's ``notify_type``."""

    __slots__ = ("title", "body", "markdown", "symbol", "call", "prediction_id", "notify_type")

    def __init__(self, title: str, body: str, markdown: str, symbol: str | None = None, *,
                 call: str | None = None, prediction_id: int | None = None,
                 notify_type: str = "info") -> None:
        self.title, self.body, self.markdown, self.symbol = title, body, markdown, symbol
        self.call, self.prediction_id, self.notify_type = call, prediction_id, notify_type


def call(action: str, confidence: float, rules: Rules) -> str:
    """What the trader acts on: BUY/SELL when at or above the minimum confidence, else HOLD."""
    if action in SIGNALS and confidence >= rules.min_confidence:
        return action
    return "HOLD"


def told(db: Any, url_hash: str, symbol: str) -> Mapping | None:
    """The last prediction alert sent to this URL for ``symbol`` (``call``, ``prediction_id``),
    or None. A ``sending`` row counts as sent: the service may have accepted it."""
    return db.execute(
        "SELECT call, prediction_id FROM notifications WHERE url_hash = ? AND symbol = ? AND "
        "kind = 'prediction' AND status IN ('sent', 'sending') AND call IS NOT NULL "
        "ORDER BY id DESC LIMIT 1", (url_hash, symbol)).fetchone()


def decide(row: Mapping, was: str, rules: Rules) -> str | None:
    """Why this prediction of a run alerts (``"change"``, ``"signal"``, ``"all"``), or None.

    ``was``: the call of the last alert sent for the symbol (HOLD when none was)."""
    if rules.symbols and row["symbol"] not in rules.symbols:
        return None
    now = call(row["action"], row["confidence"], rules)
    if rules.send == "all":
        return "all"
    if rules.send == "signals":
        return "signal" if now in SIGNALS else None
    return "change" if now != was else None


def notify_type(now: str, was: str | None) -> str:
    """Apprise's message type: ``warning`` for a SELL and for a withdrawal (a BUY or SELL told
    before, HOLD now), ``info`` for the rest (see the module docstring for why)."""
    if now == "SELL" or (now == "HOLD" and was in SIGNALS):
        return "warning"
    return "info"


def prediction(db: Any, pid: Any) -> Mapping | None:
    """A predictions row by id (None for a missing id)."""
    if not isinstance(pid, int):
        return None
    return db.execute(f"SELECT {PREDICTION_COLUMNS} FROM predictions WHERE id = ?",
                      (pid,)).fetchone()


# -- words -------------------------------------------------------------------------------------
def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _section(d: Any, key: str) -> Mapping:
    v = d.get(key) if isinstance(d, Mapping) else None
    return v if isinstance(v, Mapping) else {}


def reasons(p: Mapping, inputs: Mapping, limit: int = 3, action: str | None = None) -> list[str]:
    """The two or three components that pushed hardest toward the call, in words.

    A component's push is its weight times its distance from neutral (0.5); for a BUY the
    bullish pushes count, for a SELL the bearish ones, for a HOLD the largest either way.
    ``action``: the call told (a BUY under ``notify.min_confidence`` is told as a HOLD, and
    its reasons are a HOLD's), default the prediction's own action."""
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
    action = action or p.get("action")
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


NAMES = {"technical": "technical indicators", "sentiment": "news sentiment",
         "volume": "volume", "market": "market", "model": "model's odds of a rise"}


def moved(before: Mapping, now: Mapping, against: str, limit: int = 3) -> list[str]:
    """What moved against the call ``against`` (BUY or SELL) between two stored predictions:
    the confidence, then the components whose weighted move went most the other way."""
    out = []
    b, n = _num(before.get("confidence")), _num(now.get("confidence"))
    b_act, n_act = before.get("action"), now.get("action")
    if b is not None and n is not None:
        out.append(f"{b_act} confidence {b:.2f} -> " +
                   (f"{n:.2f}" if n_act == b_act else f"{n_act} at {n:.2f}"))
    bc = before.get("components") if isinstance(before.get("components"), Mapping) else {}
    nc = now.get("components") if isinstance(now.get("components"), Mapping) else {}
    weights = now.get("weights") if isinstance(now.get("weights"), Mapping) else {}
    sign = 1.0 if against == "BUY" else -1.0
    moves = []
    for name in NAMES:
        x, y, w = _num(bc.get(name)), _num(nc.get(name)), _num(weights.get(name))
        if x is None or y is None:
            continue
        push = (w if w is not None else 1.0) * (x - y) * sign  # > 0: against the old call
        if push > 0.005:
            moves.append((push, f"{NAMES[name]} {x:.2f} -> {y:.2f}"))
    out += [text for _, text in sorted(moves, reverse=True)[:limit]]
    return out


def link(rules: Rules, symbol: str) -> str | None:
    return f"{rules.link_base}/symbol/{symbol}" if rules.link_base else None


def render(row: Mapping, was: str | None, rules: Rules, before: Mapping | None = None) -> Message:
    """The alert for one stored prediction (``row``: a predictions row).

    ``was``: the call of the last alert sent for the symbol (None: none ever was);
    ``before``: that alert's predictions row, for what moved since (a withdrawal, a flip)."""
    p = json.loads(row["prediction"])
    inputs = json.loads(row["inputs"] or "{}")
    symbol, action, conf = row["symbol"], row["action"], row["confidence"]
    now = call(action, conf, rules)
    withdrawn = now == "HOLD" and was in SIGNALS
    if withdrawn:
        headline = f"HOLD {symbol} ({was} withdrawn)"
    else:
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
    why = reasons(p, inputs, action=now)
    changed: list[str] = []
    if was in SIGNALS and was != now:
        old = json.loads(before["prediction"]) if before is not None else {}
        changed = moved(old, p, was) if old else []
        if before is not None:
            old_price = _num(before["price"])
            since = (f"the {was} of the {_session_words(before['session'])} session"
                     + (f" at {old_price:,.2f}" if old_price is not None else ""))
        else:
            since = f"the {was} sent before"
        changed = changed or ["nothing in the inputs moved much: the call's thresholds did"]
        intro = (f"{headline}: {since} is withdrawn" if withdrawn else f"{headline}: {since} "
                 "is reversed")
    url = link(rules, symbol)
    text = [f"{headline}, {detail}", where]
    md = [f"**{headline}**, {detail}", where]
    if changed:
        text += [intro, f"What changed since the {was}:", *[f"- {c}" for c in changed]]
        md += ["", intro, "", f"What changed since the {was}:", *[f"- {c}" for c in changed]]
    label = f"Why {now} now:" if changed else "Why:"
    text += [label, *[f"- {w}" for w in why]]
    md += ["", label, *[f"- {w}" for w in why]]
    if url:
        text.append(url)
        md += ["", f"[{symbol} on the dashboard]({url})"]
    return Message(title=headline, body="\n".join(text), markdown="\n".join(md), symbol=symbol,
                   call=now, prediction_id=row["id"], notify_type=notify_type(now, was))


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


def stream_runs(db: Any, since: str, until: str) -> list[Mapping]:
    """The alert stream's runs (``alert_runs``) created in [since, until), oldest first."""
    return db.execute("SELECT run_id, kind, predictor, created_at FROM alert_runs WHERE "
                      "created_at >= ? AND created_at < ? ORDER BY created_at",
                      (since, until)).fetchall()


def digest(db: Any, day: date, report: Mapping, rules: Rules) -> Message:
    """The day's digest, of the alert stream only (the job's runs, ``predict --notify``'s):
    one line per symbol with its latest call, its price and the change on the day, and the
    call it had at the day's first run when that differs; the outcomes of the stream's
    predictions scored that day; the running hit rates.

    The change on the day is the latest price against the last price the stream saw in an
    earlier session (the 16:35 run's is the close), else against the day's first price.
    Only the predictor of the day's latest run counts (a predictor changed in the day does
    not mix two). ``day`` is a Sydney date; ``report`` is the accuracy report of live
    predictions (:func:`trading.signals.outcomes.accuracy`)."""
    from trading.signals.ledger import sydney_date

    since, until = _utc_bounds(day)
    runs = [r for r in stream_runs(db, since, until)
            if sydney_date(r["created_at"]) == day.isoformat()]
    predictor = runs[-1]["predictor"] if runs else None
    ids = [r["run_id"] for r in runs if r["predictor"] == predictor]
    rows = []
    if ids:
        marks = ",".join("?" * len(ids))
        rows = db.execute(
            "SELECT id, symbol, action, confidence, price, created_at FROM predictions "
            f"WHERE origin = 'live' AND run_id IN ({marks}) ORDER BY id", ids).fetchall()
    if rules.symbols:
        rows = [r for r in rows if r["symbol"] in rules.symbols]
    first: dict[str, Any] = {}
    last: dict[str, Any] = {}
    for r in rows:
        first.setdefault(r["symbol"], r)
        last[r["symbol"]] = r
    calls = {s: call(r["action"], r["confidence"], rules) for s, r in last.items()}
    signals = sum(1 for c in calls.values() if c in SIGNALS)
    scored = []
    if ids:
        scored = db.execute(
            "SELECT p.symbol, p.action, o.horizon, o.forward_return, o.correct, o.evaluated_at "
            "FROM outcomes o JOIN predictions p ON p.id = o.prediction_id "
            "JOIN alert_runs a ON a.run_id = p.run_id WHERE p.origin = 'live' "
            "AND o.evaluated_at >= ? AND o.evaluated_at < ? ORDER BY o.horizon, p.symbol",
            (since, until)).fetchall()
    scored = [r for r in scored if sydney_date(r["evaluated_at"]) == day.isoformat()
              and (not rules.symbols or r["symbol"] in rules.symbols)]
    right = sum(r["correct"] for r in scored)

    title = (f"ASX digest {day:%a %d %b}: {signals} signal(s), "
             f"{len(scored)} outcome(s) scored")
    from trading.signals.predictors import label

    lines = [f"{len(last)} symbol(s) from {len(ids)} job run(s) today" +
             (f" (predictor {label({'name': predictor})})" if predictor else "") +
             f"; {signals} BUY/SELL call(s) at the latest run"]
    for symbol in sorted(last):
        r = last[symbol]
        price = _num(r["price"])
        text = f"- {calls[symbol]} {symbol} {r['confidence']:.2f}"
        if price is not None:
            text += f" at {price:,.2f}"
            base = _day_base(db, r, first[symbol], ids, day)
            if base:
                text += f", {price / base - 1:+.1%} on the day"
        was = call(first[symbol]["action"], first[symbol]["confidence"], rules)
        if was != calls[symbol]:
            text += f" (was {was} at {_sydney_time(first[symbol]['created_at'])})"
        lines.append(text)
    lines.append("")
    lines.append(f"Outcomes scored today: {len(scored)}"
                 + (f", {right} right ({right / len(scored):.0%})" if scored else ""))
    for r in scored[:20]:
        lines.append(f"- {r['symbol']} {r['action']} after {r['horizon']}: "
                     f"{r['forward_return']:+.2%} {'right' if r['correct'] else 'wrong'}")
    if len(scored) > 20:
        lines.append(f"- and {len(scored) - 20} more")
    lines.append("")
    if report.get("error"):
        lines.append("Hit rates so far: not available today (the accuracy report failed; "
                     "`trading report` says why)")
    else:
        lines.append("Hit rates so far (live predictions" +
                     (f" of {label({'name': predictor})}" if predictor else "") + "):")
        lines += hit_rate_lines(report)
    if rules.link_base:
        lines += ["", f"{rules.link_base}/"]
    body = "\n".join(lines)
    return Message(title=title, body=body, markdown=body)


def _day_base(db: Any, last: Mapping, first: Mapping, ids: Sequence[str], day: date
              ) -> float | None:
    """The price the day's change is measured from: the stream's last price of the symbol in
    an earlier session, else the day's first price."""
    from trading.signals.ledger import sydney_date

    before = db.execute(
        "SELECT p.price, p.created_at FROM predictions p JOIN alert_runs a ON a.run_id = "
        "p.run_id WHERE p.symbol = ? AND p.origin = 'live' AND p.id < ? AND p.price IS NOT NULL "
        "ORDER BY p.id DESC LIMIT 1", (last["symbol"], first["id"])).fetchone()
    if before is not None and sydney_date(before["created_at"]) < day.isoformat():
        base = _num(before["price"])
    else:
        base = _num(first["price"])
    return base if base else None


def _sydney_time(created_at: str) -> str:
    from trading import clock

    t = datetime.fromisoformat(created_at)
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return f"{t.astimezone(clock.sydney()):%H:%M}"


def _utc_bounds(day: date) -> tuple[str, str]:
    """A UTC window surely containing the Sydney ``day`` (filtered exactly afterwards)."""
    from datetime import timedelta

    return ((day - timedelta(days=1)).isoformat(), (day + timedelta(days=2)).isoformat())
