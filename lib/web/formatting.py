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


FILTERS = {"pct": pct, "ratio": ratio, "rate": rate, "sydney": sydney, "ago": ago,
           "seconds": seconds, "mib": mib, "action_class": action}
