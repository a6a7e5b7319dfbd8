"""The wire protocol: framing bounds, JSON-RPC 2.0 semantics, errors as data."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trading.errors import (InvalidParams, InvalidSymbol, MethodNotFound, NotFound, RPCError,
                            UpstreamUnavailable)
from trading.runtime.protocol import Dispatcher, LineBuffer, LineTooLong, decode, encode, rpc
from trading.runtime.service import Service


class Calc(Service):
    name = "calc"

    @rpc
    def add(self, a: float, b: float = 0) -> float:
        """Add two numbers."""
        return a + b

    @rpc(positional=True)
    def mul(self, a: float, b: float) -> float:
        """Multiply."""
        return a * b

    @rpc
    def missing(self, symbol: str) -> None:
        """Always not found."""
        raise NotFound(f"no data for {symbol}", symbol=symbol)

    @rpc
    def bug(self) -> None:
        """A bug."""
        raise ZeroDivisionError("oops")

    @rpc
    def nan(self) -> dict:
        """Non-finite floats."""
        return {"x": float("nan"), "y": [float("inf"), 1.5]}

    @rpc
    def unserializable(self) -> object:
        """Returns something JSON cannot carry."""
        return object()

    @rpc
    def typed(self) -> dict:
        """Types handlers return that JSON has no name for."""
        import datetime as dt

        import numpy as np

        return {"day": dt.date(2024, 1, 2), "f": np.float64(1.5), "i": np.int64(3),
                "a": np.array([1, 2]), "gone": np.float64("nan"), "inf": [float("-inf")]}

    @rpc
    def circular(self) -> list:
        """A result that contains itself."""
        loop: list = [1]
        loop.append(loop)
        return loop

    @rpc
    def echo(self, value: object = None) -> object:
        """Its argument, back."""
        return value


@pytest.fixture
def d() -> Dispatcher:
    return Calc().dispatcher()


def ask(d: Dispatcher, message) -> object:
    raw = message if isinstance(message, bytes) else json.dumps(message).encode()
    out = d.handle_line(raw)
    if out is None:
        return None
    assert out.endswith(b"\n") and out.count(b"\n") == 1
    return json.loads(out)


def test_request_and_result(d):
    assert ask(d, {"jsonrpc": "2.0", "method": "add", "params": {"a": 1, "b": 2}, "id": 7}) == \
        {"jsonrpc": "2.0", "result": 3, "id": 7}


def test_notification_gets_no_answer_even_on_error(d):
    assert ask(d, {"jsonrpc": "2.0", "method": "add", "params": {"a": 1}}) is None
    assert ask(d, {"jsonrpc": "2.0", "method": "nope"}) is None
    assert ask(d, {"jsonrpc": "2.0", "method": "bug"}) is None


@pytest.mark.parametrize("line,code", [
    (b'{"jsonrpc": "2.0", "method": "add", "params": ', -32700),
    (b"\xff\xfe not utf-8", -32700),
    (b"[]", -32600),
    (b'{"method": "add", "id": 1}', -32600),
    (b'{"jsonrpc": "2.0", "method": 1, "id": 1}', -32600),
    (b'{"jsonrpc": "2.0", "method": "add", "id": {"x": 1}}', -32600),
    (b'{"jsonrpc": "2.0", "method": "add", "id": true}', -32600),
    (b'"just a string"', -32600),
    (b'{"jsonrpc": "2.0", "method": "nope", "id": 1}', -32601),
    (b'{"jsonrpc": "2.0", "method": "add", "params": {"c": 1}, "id": 1}', -32602),
    (b'{"jsonrpc": "2.0", "method": "add", "id": 1}', -32602),
    (b'{"jsonrpc": "2.0", "method": "add", "params": [1, 2], "id": 1}', -32602),
    (b'{"jsonrpc": "2.0", "method": "add", "params": "x", "id": 1}', -32602),
    (b'{"jsonrpc": "2.0", "method": "bug", "id": 1}', -32603),
    (b'{"jsonrpc": "2.0", "method": "unserializable", "id": 1}', -32603),
    (b'{"jsonrpc": "2.0", "method": "missing", "params": {"symbol": "X"}, "id": 1}', -32001),
])
def test_error_codes(d, line, code):
    answer = ask(d, line)
    assert answer["jsonrpc"] == "2.0"
    assert answer["error"]["code"] == code
    assert isinstance(answer["error"]["message"], str) and answer["error"]["message"]
    assert isinstance(answer["error"]["data"]["problem"], str)


def test_a_method_whose_params_all_have_defaults_needs_none(d):
    assert ask(d, {"jsonrpc": "2.0", "method": "echo", "id": 1}) == \
        {"jsonrpc": "2.0", "result": None, "id": 1}


def test_positional_params_only_where_the_method_allows(d):
    assert ask(d, {"jsonrpc": "2.0", "method": "mul", "params": [3, 4], "id": 1})["result"] == 12
    err = ask(d, {"jsonrpc": "2.0", "method": "add", "params": [3, 4], "id": 1})["error"]
    assert err["code"] == -32602 and "by name" in err["message"]


def test_service_error_carries_problem_and_data(d):
    err = ask(d, {"jsonrpc": "2.0", "method": "missing", "params": {"symbol": "ZZZ"}, "id": 2})
    assert err["error"]["data"] == {"problem": "not-found", "symbol": "ZZZ"}
    assert err["id"] == 2


def test_batch_mixes_answers_and_skips_notifications(d):
    batch = [
        {"jsonrpc": "2.0", "method": "add", "params": {"a": 1, "b": 1}, "id": "a"},
        {"jsonrpc": "2.0", "method": "add", "params": {"a": 5}},
        {"jsonrpc": "2.0", "method": "nope", "id": "b"},
        1,
    ]
    answers = ask(d, batch)
    assert [a["id"] for a in answers] == ["a", "b", None]
    assert answers[0]["result"] == 2
    assert answers[1]["error"]["code"] == -32601
    assert answers[2]["error"]["code"] == -32600


def test_batch_of_notifications_gets_nothing(d):
    assert ask(d, [{"jsonrpc": "2.0", "method": "add", "params": {"a": 1}}] * 3) is None


def test_nan_becomes_null(d):
    assert ask(d, {"jsonrpc": "2.0", "method": "nan", "id": 1})["result"] == \
        {"x": None, "y": [None, 1.5]}


def test_values_json_has_no_name_for_are_converted_or_nulled(d):
    assert ask(d, {"jsonrpc": "2.0", "method": "typed", "id": 1})["result"] == \
        {"day": "2024-01-02", "f": 1.5, "i": 3, "a": [1, 2], "gone": None, "inf": [None]}


def test_a_circular_result_is_an_internal_error_and_the_service_goes_on(d):
    assert ask(d, {"jsonrpc": "2.0", "method": "circular", "id": 1})["error"]["code"] == -32603
    assert ask(d, {"jsonrpc": "2.0", "method": "add", "params": {"a": 2}, "id": 2})["result"] == 2


def test_a_lone_surrogate_is_sent_back_escaped():
    out = Calc().dispatcher().handle_line(
        b'{"jsonrpc":"2.0","method":"echo","params":{"value":"a\\ud800"},"id":"\\udfff"}')
    assert out == b'{"jsonrpc":"2.0","result":"a\\ud800","id":"\\udfff"}\n'


finite_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20)


@given(finite_json_values)
@settings(max_examples=300, deadline=None)
def test_encode_writes_what_json_dumps_writes(value):
    assert encode(value) == json.dumps(value, separators=(",", ":"), ensure_ascii=False,
                                       allow_nan=False).encode("utf-8") + b"\n"


def strict_loads(text: str):
    """json.loads refusing NaN and the infinities, which are not JSON (RFC 8259)."""
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON (RFC 8259 has no NaN or infinities)")

    return json.loads(text, parse_constant=refuse)


def _outcome(parse, text: str) -> str:
    try:
        return "value " + repr(parse(text))
    except ValueError as exc:
        return f"{type(exc).__name__} {exc}"


@given(st.sampled_from(["", " ", "\t", "\r", "\n", "\ufeff", "x", "}", " {}", "\u00a0"]),
       finite_json_values | st.text(max_size=30),
       st.sampled_from(["", " ", "\r", " \t\r\n", "x", " 1", "{}", "\u00a0", "\u2028"]))
@settings(max_examples=300, deadline=None)
def test_decode_reads_what_json_loads_reads_and_fails_alike(before, value, after):
    text = before + (json.dumps(value) if not isinstance(value, str) or value[:1] == '"'
                     else value) + after
    assert _outcome(decode, text) == _outcome(strict_loads, text)


@pytest.mark.parametrize("text", ['{"a":1}\r', ' {"a":1}', '\ufeff{"a":1}', '{"a":1} {}', "NaN",
                                  '{"a":1', '"\\ud800"', "[1,2]  \t", '{"x":-Infinity}'])
def test_decode_edge_cases_match_json_loads(text):
    assert _outcome(decode, text) == _outcome(strict_loads, text)


@pytest.mark.parametrize("text", ["NaN", "[Infinity]", '{"x":-Infinity}'])
def test_decode_refuses_what_is_not_json(text):
    with pytest.raises(ValueError, match="is not JSON"):
        decode(text)


def test_deep_nesting_is_an_error_not_a_crash(d):
    deep = b'{"jsonrpc": "2.0", "method": "add", "params": {"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}, \"id\": 1}"
    answer = ask(d, deep)
    assert answer["error"]["code"] in (-32700, -32600, -32602)


def test_discover_lists_methods_with_params_and_docs(d):
    result = ask(d, {"jsonrpc": "2.0", "method": "rpc.discover", "id": 1})["result"]
    methods = {m["name"]: m for m in result["methods"]}
    assert {"health_check", "rpc.discover", "add", "mul"} <= set(methods)
    assert methods["add"]["params"] == [{"name": "a", "required": True},
                                        {"name": "b", "required": False, "default": 0}]
    assert methods["add"]["doc"] == "Add two numbers."


def test_errors_round_trip_to_the_same_class():
    for exc in (NotFound("x", symbol="A"), InvalidSymbol("bad symbol", symbol="../x"),
                UpstreamUnavailable("down"), MethodNotFound("m")):
        back = RPCError.from_json(json.loads(json.dumps(exc.to_json())))
        assert type(back) is type(exc)
        assert back.to_json() == exc.to_json()
    assert isinstance(RPCError.from_json({"code": -32602, "message": "m"}), InvalidParams)
    assert type(RPCError.from_json("garbage")).__name__ == "InternalError"


# -- framing -----------------------------------------------------------------------------
def test_line_buffer_splits_and_keeps_the_tail():
    b = LineBuffer(limit=100)
    assert list(b.feed(b"one\ntw")) == [b"one"]
    assert b.pending == 2
    assert list(b.feed(b"o\n\nthree\n")) == [b"two", b"", b"three"]
    assert b.pending == 0


def test_line_buffer_bounds_a_line_without_newline():
    b = LineBuffer(limit=10)
    with pytest.raises(LineTooLong):
        list(b.feed(b"x" * 11))


def test_line_buffer_bounds_a_long_line_that_has_its_newline():
    b = LineBuffer(limit=10)
    with pytest.raises(LineTooLong):
        list(b.feed(b"x" * 50 + b"\n"))


lines = st.lists(st.text(alphabet=st.characters(blacklist_characters="\n", blacklist_categories=("Cs",)), max_size=40),
                 max_size=20)


def _chunks(texts: list[str], cuts: list[int]):
    """The lines, newline-terminated and UTF-8, as one byte stream cut into reads of the
    given sizes in turn."""
    data = b"".join(t.encode("utf-8") + b"\n" for t in texts)
    i = k = 0
    while i < len(data):
        yield data[i:i + cuts[k % len(cuts)]]
        i += cuts[k % len(cuts)]
        k += 1


@given(lines, st.lists(st.integers(min_value=1, max_value=17), min_size=1, max_size=10))
@settings(max_examples=300, deadline=None)
def test_framing_is_independent_of_chunking(texts, cuts):
    b = LineBuffer(limit=1000)
    got = []
    for chunk in _chunks(texts, cuts):
        got += list(b.feed(chunk))
    assert [g.decode("utf-8") for g in got] == texts
    assert b.pending == 0


@given(lines, st.lists(st.booleans(), max_size=20))
@settings(max_examples=200, deadline=None)
def test_framing_of_one_line_per_read_matches_any_other_read(texts, split):
    # The usual read is one whole line: feed takes a shortcut for it that must agree with the
    # general path, also beside an empty read and a line whose read is split in two.
    b = LineBuffer(limit=1000)
    got = []
    for i, t in enumerate(texts):
        data = t.encode("utf-8") + b"\n"
        got += list(b.feed(b""))
        if i < len(split) and split[i] and len(data) > 1:
            got += list(b.feed(data[:1]))
            data = data[1:]
        got += list(b.feed(data))
    assert [g.decode("utf-8") for g in got] == texts
    assert b.pending == 0


def test_line_buffer_bounds_a_whole_line_read_at_once():
    b = LineBuffer(limit=10)
    assert list(b.feed(b"x" * 10 + b"\n")) == [b"x" * 10]
    with pytest.raises(LineTooLong):
        list(b.feed(b"x" * 11 + b"\n"))


@given(st.binary(max_size=300))
@settings(max_examples=500, deadline=None)
def test_any_bytes_get_a_valid_jsonrpc_answer_or_none(raw):
    d = Calc().dispatcher()
    out = d.handle_line(raw.replace(b"\n", b" "))
    if out is not None:
        answer = json.loads(out)
        assert answer["jsonrpc"] == "2.0" if isinstance(answer, dict) else all(
            a["jsonrpc"] == "2.0" for a in answer)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20)


@given(json_values)
@settings(max_examples=300, deadline=None)
def test_any_json_value_as_a_request_is_answered_validly(value):
    d = Calc().dispatcher()
    out = d.handle_line(json.dumps(value).encode())
    if out is None:
        return
    answer = json.loads(out)
    for a in answer if isinstance(answer, list) else [answer]:
        assert a["jsonrpc"] == "2.0"
        assert ("result" in a) != ("error" in a)
        if "error" in a:
            assert -32768 <= a["error"]["code"] <= -32000


@given(st.text(max_size=200))
@settings(max_examples=200, deadline=None)
def test_unicode_round_trips_through_encode(text):
    line = encode({"v": text})
    assert line.endswith(b"\n") and b"\n" not in line[:-1]
    assert json.loads(line)["v"] == text


# -- health_check --------------------------------------------------------------------------
@pytest.mark.parametrize("service", ["market-data", "sentiment", "prediction", "training",
                                     "calc"])
def test_health_check_answers_every_kind_of_id_with_its_fields(service, cfg):
    from trading import handlers
    from trading.runtime.service import Context

    svc = (Calc if service == "calc" else handlers.load(service))(Context(cfg))
    d = svc.dispatcher()
    for id_ in (7, "x\u00e9", None, 1.5, 2**70):
        line = d.handle_line(json.dumps({"jsonrpc": "2.0", "method": "health_check",
                                         "id": id_}).encode())
        got = json.loads(line)
        assert got["id"] == id_ and got["result"]["service"] == svc.name
        assert set(got["result"]) == set(svc.health_check())


def test_health_check_fields_of_a_service_win_and_what_is_not_json_becomes_null(cfg):
    from trading.runtime.service import Context

    class Odd(Calc):
        fields = {"status": "degraded"}  # replaces a base field: the dict's rule, last wins

        def health(self):
            return dict(self.fields)

    svc = Odd(Context(cfg))
    d = svc.dispatcher()
    call = b'{"jsonrpc":"2.0","method":"health_check","id":1}'
    assert json.loads(d.handle_line(call))["result"]["status"] == "degraded"
    Odd.fields = {"ratio": float("nan")}  # not JSON: written as null
    assert json.loads(d.handle_line(call))["result"]["ratio"] is None


def test_params_that_do_not_fit_are_invalid_params_in_the_protocols_words():
    class Svc(Service):
        name = "svc"

        @rpc
        def get(self, symbol: str, *, days: int = 1) -> str:
            return symbol

        @rpc
        def broken(self) -> None:
            raise TypeError("a bug inside the method")  # not the params' fault

    d = Svc().dispatcher()

    def error(params):
        line = d.handle_line(json.dumps({"jsonrpc": "2.0", "method": "get", "params": params,
                                         "id": 1}).encode())
        return json.loads(line)["error"]

    assert error({}) == {"code": -32602, "message":
                         "get: missing 1 required parameter: 'symbol'",
                         "data": {"problem": "invalid-params", "method": "get"}}
    assert error({"symbol": "CBA", "x": 1})["message"] == "get: got an unexpected parameter 'x'"
    assert error({"symbol": "CBA", "self": 1})["message"].startswith("get: got multiple values")
    assert error(["CBA"])["message"] == "get takes parameters by name, not by position"
    broken = json.loads(d.handle_line(b'{"jsonrpc":"2.0","method":"broken","id":2}'))
    assert broken["error"]["code"] == -32603  # a TypeError from inside is the service's bug
