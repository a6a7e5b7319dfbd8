"""Gaps in a series: where a history stops being daily.

More than :data:`GAP_SESSIONS` ASX sessions without a bar is a gap: a suspension, a listing
not yet traded, or an early history kept one row a month. Indicators are never computed
across one (:func:`trading.market.summary.since_last_gap`,
:func:`trading.market.series.series_summaries`); they warm up again after it. The reader of
local files (:mod:`trading.market.reading`) reports them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from trading.market import asx

# More ASX sessions than this missing between two bars is a gap: a suspension, a listing not
# yet traded, or an early history kept one row a month. Indicators are not computed across
# one; they warm up again after it (WARMUP_SESSIONS bars of trading.market.periods).
GAP_SESSIONS = 5


def sessions_missing(before: str, after: str) -> int:
    """ASX sessions strictly between the sessions ``before`` and ``after`` (ISO dates)."""
    a, b = dt.date.fromisoformat(before[:10]), dt.date.fromisoformat(after[:10])
    if b <= a:
        return 0
    nxt = asx.next_session(a)
    if nxt >= b:
        return 0
    return len(asx.sessions_between(nxt, b - dt.timedelta(days=1)))


def gaps(dates: Sequence[str], limit: int = GAP_SESSIONS) -> list[tuple[int, int]]:
    """``(i, missing)`` for each bar ``i`` that follows more than ``limit`` missing sessions."""
    out = []
    for i in range(1, len(dates)):
        prev, cur = dates[i - 1][:10], dates[i][:10]
        try:
            # Most bars follow the previous session: a cheap test before the calendar walk.
            if (dt.date.fromisoformat(cur) - dt.date.fromisoformat(prev)).days <= limit + 1:
                continue
        except ValueError:
            continue  # labels that are not dates (hand-made bars): nothing to measure
        missing = sessions_missing(prev, cur)
        if missing > limit:
            out.append((i, missing))
    return out
