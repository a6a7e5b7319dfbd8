"""Symbol validation: the gate before SQL, file names and Yahoo."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trading.errors import InvalidSymbol
from trading.market.symbols import normalize, normalize_all

SAFE = re.compile(r"(\^[A-Z0-9]{1,10}|[A-Z0-9]{1,6}\.AX)")


@pytest.mark.parametrize("given_, expected", [
    ("cba", "CBA.AX"), ("CBA", "CBA.AX"), (" cba.ax ", "CBA.AX"), ("CBAPM", "CBAPM.AX"),
    ("^axjo", "^AXJO"), ("^AXJO", "^AXJO"), ("14D", "14D.AX"),
])
def test_normalize(given_, expected):
    assert normalize(given_) == expected


@pytest.mark.parametrize("bad", ["", " ", "CBA.NZ", "AAPL.US", "A" * 7, "^", "^AX/JO",
                                 "../../etc/passwd", "CBA;", "C'BA", "CBA AX", "CB-A",
                                 "cba.ax.ax", "X" * 100, None, 3, ["CBA"]])
def test_refused_with_the_symbol_named(bad):
    with pytest.raises(InvalidSymbol) as info:
        normalize(bad)
    assert info.value.code == -32602 and info.value.problem == "invalid-symbol"
    assert "symbol" in info.value.data


def test_normalize_all_dedupes_in_order():
    assert normalize_all(["nab", "CBA", "NAB.AX"]) == ["NAB.AX", "CBA.AX"]
    with pytest.raises(InvalidSymbol):
        normalize_all([])


@given(st.text(max_size=20))
def test_whatever_passes_is_safe_and_stable(text):
    try:
        out = normalize(text)
    except InvalidSymbol:
        return
    assert SAFE.fullmatch(out) and normalize(out) == out
