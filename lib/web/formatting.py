"""Jinja2 filters: numbers, times and ages as the pages print them (Sydney time)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from trading import clock


def pct(value: Any, digits: int = 1) -> str:
    """0.0123 -> '+1.2%'; None -> '-'."""
    if not isinstance(value, (int, float)):
        return "-"
    return f"{value * 100:+.{digits}f}%"


def ratio(value: Any, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "-"


def rate(value: Any) -> str:
    """A hit rate 0.5612 -> '56.1%'."""
    return f"{value * 100:.1f}%" if isinstance(value, (int, float)) else "-"


def _when(value: Any) -> datetime | str:
    """An ISO time as an aware datetime (UTC when it names no zone); "-" for nothing, and the
    text itself when it is not a time."""
    if not isinstance(value, str) or not value:
        return "-"
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        return value
    return t if t.tzinfo is not None else t.replace(tzinfo=timezone.utc)


def sydney(value: Any) -> str:
    """An ISO time -> 'YYYY-MM-DD HH:MM' in Sydney time."""
    t = _when(value)
    if isinstance(t, str):
        return t
    return t.astimezone(clock.sydney()).strftime("%Y-%m-%d %H:%M")


def ago(value: Any) -> str:
    """An ISO time -> '5 min ago', '3 h ago', '2 d ago'."""
    t = _when(value)
    if isinstance(t, str):
        return t
    s = (clock.now() - t).total_seconds()
    if s < 90:
        return f"{max(s, 0):.0f} s ago"
    if s < 5400:
        return f"{s / 60:.0f} min ago"
    if s < 129600:
        return f"{s / 3600:.0f} h ago"
    return f"{s / 86400:.0f} d ago"


def seconds(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "-"
    return f"{value:.0f} s" if value < 120 else f"{value / 60:.0f} min"


def mib(value: Any) -> str:
    return f"{value / 2**20:.1f} MiB" if isinstance(value, (int, float)) else "-"


def action(value: Any) -> str:
    """The CSS class of an action badge."""
    return {"BUY": "buy", "SELL": "sell", "HOLD": "hold"}.get(str(value), "hold")


def owner(label: Any) -> str:
    """Whose: "the rules'" for the built-in rules, "momentum's" for another predictor."""
    return "the rules'" if label in (None, "rules") else f"{label}'s"


def predictor_label(name: Any) -> str:
    """``rules`` for the built-in rules, the module's last part for another."""
    return str(name or "rules").partition(":")[0].rpartition(".")[2]


def price(value: Any) -> str:
    """A share price as the ASX quotes it: 15.05, 0.335 (three places under a dollar)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "-"
    return f"{value:,.3f}" if abs(value) < 1 else f"{value:,.2f}"


def count(value: Any) -> str:
    """A count for people: 3318.0 -> '3,318'."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "-"
    return f"{round(value):,}"


SOURCES = {"sample": "sample data (synthetic)", "csv": "CSV files", "yahoo": "Yahoo"}


def stream_text(stream: Any) -> str:
    """A stream in words: 'live calls of rules from Yahoo, daily bars'."""
    if not isinstance(stream, dict):
        return "every stream"
    origin = {"live": "live calls", "replay": "replayed calls"}.get(
        str(stream.get("origin")), "calls of every origin")
    pred = stream.get("predictor")
    who = (str(pred).partition(":")[0].rpartition(".")[2] if pred else "every predictor")
    src = stream.get("source")
    kind = str(src).split(":", 1)[0] if src else None
    where = SOURCES.get(kind, kind or "every source")
    if kind == "csv" and ":" in str(src):
        where += f" ({str(src).split(':', 1)[1]})"
    return f"{origin} of {who} from {where}, daily bars"


def stream_query(stream: Any) -> str:
    """The query string that selects ``stream`` (for links and the chart's data)."""
    from urllib.parse import urlencode

    if not isinstance(stream, dict):
        return ""
    return urlencode([(k, stream[k]) for k in ("origin", "source", "predictor")
                      if stream.get(k) and stream.get(k) != "unknown"])


FILTERS = {"pct": pct, "ratio": ratio, "rate": rate, "sydney": sydney, "ago": ago,
           "seconds": seconds, "mib": mib, "action_class": action, "price": price,
           "count": count, "owner": owner, "predictor_label": predictor_label, "stream_text": stream_text, "stream_query": stream_query}
