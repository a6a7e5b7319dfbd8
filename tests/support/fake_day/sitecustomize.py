"""Moves this interpreter's wall clock to ``FAKE_DAY`` (ISO 8601) before anything is imported,
for tests that must pass on any day: ``PYTHONPATH=tests/support/fake_day``. ``time.time`` and
the ``datetime`` classes' ``now``/``today``/``utcnow`` read the moved clock; monotonic time,
and so every timeout, is untouched. Installed before any other import, so a module's
``from datetime import datetime`` binds the moved class too."""

import datetime as _dt
import os
import time as _time

_day = os.environ.get("FAKE_DAY")
if _day:
    # pandas and numpy build C types on the real datetime classes: they load first.
    import numpy  # noqa: F401
    import pandas  # noqa: F401

    _real = _time.time
    _shift = _dt.datetime.fromisoformat(_day).timestamp() - _real()

    def _moved() -> float:
        return _real() + _shift

    class datetime(_dt.datetime):  # noqa: N801 - it stands in for datetime.datetime
        __slots__ = ()  # the size C extensions (pandas) expect of a datetime
        @classmethod
        def now(cls, tz=None):
            return cls.fromtimestamp(_moved(), tz)

        @classmethod
        def utcnow(cls):
            return cls.fromtimestamp(_moved(), _dt.timezone.utc).replace(tzinfo=None)

        @classmethod
        def today(cls):
            return cls.fromtimestamp(_moved())

    class date(_dt.date):  # noqa: N801
        __slots__ = ()
        @classmethod
        def today(cls):
            return _dt.date.fromtimestamp(_moved())

    _time.time = _moved
    _time.time_ns = lambda: int(_moved() * 1e9)
    _dt.datetime = datetime
    _dt.date = date
