"""The ASX calendar and the freshness rules that follow it."""

from __future__ import annotations

import datetime as dt

import pytest

from trading.market import asx, summary as market

SYD = asx.TZ
D = dt.date


def at(y, m, d, hh=0, mm=0) -> dt.datetime:
    return dt.datetime(y, m, d, hh, mm, tzinfo=SYD)


def test_2026_holidays_are_closures_and_nsw_only_days_are_not():
    for day in ["2026-01-01", "2026-01-26", "2026-04-03", "2026-04-06", "2026-06-08",
                "2026-12-25", "2026-12-28"]:
        assert not asx.is_session(D.fromisoformat(day)), day
        assert asx.holiday_name(D.fromisoformat(day))
    # The NSW Bank Holiday (first Monday of August) is a normal ASX session.
    assert asx.is_session(D(2026, 8, 3))
    assert not asx.is_session(D(2026, 11, 28))  # Saturday


def test_closures_before_the_xasx_table_come_from_the_nsw_list():
    """holidays' XASX table starts in 2000; a 1990s file must not keep Christmas rows."""
    for day in ["1995-12-25", "1995-12-26", "1995-04-14", "1995-04-17", "1995-04-25",
                "1995-06-12", "1995-01-02", "1995-01-26"]:
        assert not asx.is_session(D.fromisoformat(day)), day
        assert asx.holiday_name(D.fromisoformat(day))
    # NSW-only holidays the exchange traded through: Bank Holiday, Labour Day, and ANZAC Day
    # moved off a Sunday (the ASX 200 has rows on all three).
    for day in ["1995-08-07", "1995-10-02", "1993-04-26", "1999-04-26"]:
        assert asx.is_session(D.fromisoformat(day)), day
    # Christmas on a Saturday and Boxing Day on a Sunday close the Monday and the Tuesday,
    # as XASX has them from 2000 (NSW's own list of 1999 moves only one of them).
    assert [d.isoformat() for d in asx.sessions_between(D(1999, 12, 24), D(2000, 1, 5))] == [
        "1999-12-24", "1999-12-29", "1999-12-30", "2000-01-04", "2000-01-05"]
    assert asx.holiday_name(D(1999, 12, 31)) == "Y2K closure"
    assert not asx.is_session(D(1994, 1, 3))      # New Year's Day on a Saturday
    assert not asx.is_session(D(1998, 12, 28))    # Boxing Day on a Saturday


def test_early_closes():
    assert asx.is_early_close(D(2026, 12, 24))     # last session before Christmas
    assert asx.is_early_close(D(2026, 12, 31))
    assert not asx.is_early_close(D(2026, 12, 23))
    assert asx.session_hours(D(2026, 12, 24))[1] == at(2026, 12, 24, 14, 10)
    assert asx.session_hours(D(2026, 12, 25)) is None
    # 2027: Christmas is a Saturday, the holiday moves to Monday 27th; Friday 24th closes early.
    assert asx.is_early_close(D(2027, 12, 24))


def test_hours_follow_daylight_saving():
    winter, summer = asx.session_hours(D(2026, 6, 15)), asx.session_hours(D(2026, 11, 24))
    assert winter[0].utcoffset() == dt.timedelta(hours=10)
    assert summer[0].utcoffset() == dt.timedelta(hours=11)
    assert winter[0].astimezone(dt.timezone.utc).hour == 0
    assert summer[0].astimezone(dt.timezone.utc).hour == 23  # 23:00 UTC the day before


def test_is_open_and_neighbours():
    assert asx.is_open(at(2026, 11, 24, 10, 0))
    assert not asx.is_open(at(2026, 11, 24, 9, 59))
    assert not asx.is_open(at(2026, 11, 24, 16, 0))
    assert not asx.is_open(at(2026, 12, 25, 12, 0))
    assert asx.is_open(dt.datetime(2026, 11, 24, 0, 0, tzinfo=dt.timezone.utc))  # 11:00 AEDT
    with pytest.raises(ValueError):
        asx.is_open(dt.datetime(2026, 11, 24, 12, 0))
    assert asx.previous_session(D(2026, 12, 29)) == D(2026, 12, 24)
    assert asx.next_session(D(2026, 12, 24)) == D(2026, 12, 29)
    assert asx.next_session(D(2026, 4, 2)) == D(2026, 4, 7)
    assert asx.last_closed_session(at(2026, 11, 24, 15, 0)) == D(2026, 11, 23)
    assert asx.last_closed_session(at(2026, 11, 24, 16, 30)) == D(2026, 11, 24)
    assert len(asx.sessions_between(D(2026, 12, 21), D(2027, 1, 4))) == 8


def test_session_date_is_exchange_local_not_utc():
    moment = dt.datetime(2026, 1, 1, 13, 0, tzinfo=dt.timezone.utc)   # 00:00 AEDT, Jan 2
    assert asx.session_date(moment) == D(2026, 1, 2)


def test_fresh_for_minutes_during_a_session():
    t = at(2026, 11, 24, 11, 0)
    assert market.fresh_until(t) == t + market.LIVE_TTL
    # Near the end: never past the moment the day's bar settles.
    late = at(2026, 11, 24, 16, 30)
    assert market.fresh_until(late) == market.settles_at(D(2026, 11, 24))


def test_fresh_until_the_next_session_after_the_close():
    friday_evening = at(2026, 11, 27, 18, 0)
    assert market.fresh_until(friday_evening) == at(2026, 11, 30, 10, 0)
    before_open = at(2026, 11, 24, 7, 0)
    assert market.fresh_until(before_open) == at(2026, 11, 24, 10, 0)
    christmas_eve = at(2026, 12, 24, 15, 0)   # after the 14:10 early close settles
    assert market.fresh_until(christmas_eve) == at(2026, 12, 29, 10, 0)


def test_a_bar_is_final_only_after_the_delayed_feed_settles():
    day = D(2026, 11, 24)
    assert not market.is_final(day, at(2026, 11, 24, 15, 0))
    assert not market.is_final(day, at(2026, 11, 24, 16, 15))
    assert market.is_final(day, at(2026, 11, 24, 16, 40))
    assert market.is_final(D(2026, 11, 23), at(2026, 11, 24, 11, 0))


def test_a_series_missing_a_closed_session_is_asked_again_for_a_while():
    """At 16:40 the feed may not have today's bar yet: caching that series until tomorrow's
    open would leave the 17:30 outcomes job and every evening call without it."""
    t = at(2026, 11, 24, 16, 40)
    assert market.fresh_until(t, "2026-11-24") == at(2026, 11, 25, 10, 0)  # it has it
    assert market.fresh_until(t, "2026-11-23") == t + market.LIVE_TTL       # late: ask again
    late = at(2026, 11, 24, 19, 40)  # past the window: a suspended stock never gets a bar
    assert market.fresh_until(late, "2026-11-23") == at(2026, 11, 25, 10, 0)
    saturday = at(2026, 11, 28, 12, 0)  # no session closed today: nothing is missing
    assert market.fresh_until(saturday, "2026-11-27") == at(2026, 11, 30, 10, 0)
