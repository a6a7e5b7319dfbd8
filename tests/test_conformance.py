"""JSON-RPC 2.0 conformance of every service, on a cold process and on a warm one.

The cases (:data:`CASES`, data: the bytes sent and the answers required) are the JSON-RPC 2.0
specification's section 7 examples adapted to ``health_check`` (the method every service
has), and the edges of this runtime's framing: malformed UTF-8, a UTF-8 BOM, NaN, deep
nesting, an empty line, a line at the line limit and one byte past it, a batch at the batch
cap and one past it.

Every case runs against every service in :data:`trading.handlers.SERVICES`, started as its
unit starts it (:class:`support.cold.ColdHandler`: ``systemd-socket-activate`` exec'ing the
venv's ``trading-<service>``):

- cold, ``test_cold[<service>-<case>]``: a fresh process per case, the case its very first
  line. Such a process has imported only what the handler imports, so an error path that
  needs a module nobody has loaded yet fails here and nowhere else;
- warm, ``test_warm[<service>]``: one process answers a health check, then every case in
  turn, each on a connection of its own, then a health check again.

For every case: each answer line is strict JSON (UTF-8, no NaN) and exactly what the
specification says (an object or an array, ``jsonrpc`` "2.0", the error code, the id, and
no answer at all to a notification); the connection is answered, never dropped: a sentinel
request on the same connection is answered next, so nothing unasked-for came before it
(past the line limit the error comes, then the connection closes); and the same process
still answers a health check on a new connection.

The matrix, service x case x cold/warm, as a table (for an issue note)::

    .venv/bin/python tests/test_conformance.py --matrix [--service market-data ...]
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

if __name__ == "__main__":  # run as a script: import what pytest would put on the path
    sys.path.insert(0, str(Path(__file__).resolve().parent))

import pytest

from support.cold import ColdHandler, handler_env
from support.wire import Connection
from trading.config import SETTINGS
from trading.handlers import SERVICES

pytestmark = pytest.mark.slow  # ~100 cold starts; systemd-socket-activate is not the manager

LINE_LIMIT = 4096  # the handlers run with this limit so that a line past it is cheap to send
MAX_BATCH = SETTINGS["max_batch"].default  # the cap a service has unless configured
# What every handler here runs with (the rest is the test's own directories).
SETTINGS_ENV = {"TRADING_LINE_LIMIT": str(LINE_LIMIT), "TRADING_MAX_BATCH": str(MAX_BATCH),
                "TRADING_SOURCE": "sample", "TRADING_NEWS_SOURCE": "sample",
                "TRADING_IN_PROCESS": "never"}
SENTINEL = b'{"jsonrpc":"2.0","method":"health_check","id":"sentinel"}\n'
ALIVE = b'{"jsonrpc":"2.0","method":"health_check","id":"alive"}\n'
# The project's stable problem codes of the specification's errors (trading.errors).
PROBLEMS = {-32700: "parse-error", -32600: "invalid-request", -32601: "method-not-found",
            -32602: "invalid-params"}


# -- what an answer must be ----------------------------------------------------------------
def _same(a: Any, b: Any) -> bool:
    """Equal and of the same JSON type: the id "1" is not the id 1, nor is 1 the id true."""
    return a == b and type(a) is type(b)


class Result(NamedTuple):
    """``{"jsonrpc": "2.0", "result": ..., "id": id}``: ``method``'s result, of this process."""

    id: Any
    method: str = "health_check"

    def check(self, answer: Any, service: str, pid: int) -> None:
        assert isinstance(answer, dict), f"an object was expected, got {answer!r}"
        assert set(answer) == {"jsonrpc", "result", "id"}, f"members of {answer!r}"
        assert answer["jsonrpc"] == "2.0", answer
        assert _same(answer["id"], self.id), f"id {self.id!r} expected: {answer!r}"
        result = answer["result"]
        if self.method == "health_check":
            assert isinstance(result, dict) and result.get("service") == service \
                and result.get("status") == "ok" and result.get("pid") == pid, \
                f"not {service}'s health (pid {pid}): {answer!r}"
        else:  # rpc.discover
            names = [m.get("name") for m in result.get("methods", [])] \
                if isinstance(result, dict) else []
            assert "health_check" in names, f"not a method list: {answer!r}"


class Error(NamedTuple):
    """``{"jsonrpc": "2.0", "error": {code, message, data}, "id": id}``; ``data`` carries the
    project's ``problem`` (the code's own unless given) and any ``data`` items given."""

    code: int
    id: Any = None
    problem: str | None = None
    data: dict | None = None

    def check(self, answer: Any, service: str, pid: int) -> None:
        assert isinstance(answer, dict), f"an object was expected, got {answer!r}"
        assert set(answer) == {"jsonrpc", "error", "id"}, f"members of {answer!r}"
        assert answer["jsonrpc"] == "2.0", answer
        assert _same(answer["id"], self.id), f"id {self.id!r} expected: {answer!r}"
        error = answer["error"]
        assert isinstance(error, dict) and {"code", "message"} <= set(error) \
            <= {"code", "message", "data"}, f"not an error object: {answer!r}"
        assert _same(error["code"], self.code), f"code {self.code} expected: {answer!r}"
        assert isinstance(error["message"], str) and error["message"], answer
        data = error.get("data")
        assert isinstance(data, dict), f"no data object: {answer!r}"
        assert data.get("problem") == (self.problem or PROBLEMS[self.code]), answer
        for key, value in (self.data or {}).items():
            assert _same(data.get(key), value), f"data {key}={value!r} expected: {answer!r}"


class Batch(NamedTuple):
    """An array of exactly these answers, in any order (the specification allows any)."""

    items: tuple

    def check(self, answer: Any, service: str, pid: int) -> None:
        assert isinstance(answer, list), f"an array was expected, got {answer!r}"
        assert len(answer) == len(self.items), \
            f"{len(self.items)} answers expected, got {len(answer)}: {answer!r}"
        left = list(answer)
        for expect in self.items:
            for i, got in enumerate(left):
                try:
                    expect.check(got, service, pid)
                except AssertionError:
                    continue
                del left[i]
                break
            else:
                raise AssertionError(f"no answer in the array is {expect}: {answer!r}")


class OneOf(NamedTuple):
    """Any one of these (where the specification lets the runtime choose)."""

    options: tuple

    def check(self, answer: Any, service: str, pid: int) -> None:
        failures = []
        for option in self.options:
            try:
                return option.check(answer, service, pid)
            except AssertionError as exc:
                failures.append(f"not {option}: {exc}")
        raise AssertionError("; ".join(failures))


def batch(*items) -> Batch:
    return Batch(items)


def one_of(*options) -> OneOf:
    return OneOf(options)


# -- the cases -----------------------------------------------------------------------------
class Case(NamedTuple):
    name: str          # the second half of the test id
    send: bytes        # what goes on the wire, newlines included
    answers: tuple     # the answer lines required, in order; () for none at all
    closes: bool = False  # after its answers, the service closes the connection


def line(message: Any) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def call(id: Any, method: str = "health_check", **members: Any) -> dict:
    return {"jsonrpc": "2.0", "method": method, **members, "id": id}


def padded(message: dict, size: int) -> bytes:
    """``message`` as a line of exactly ``size`` bytes before its newline: spaces before the
    closing brace (JSON whitespace, so the same request)."""
    text = json.dumps(message, separators=(",", ":")).encode()
    assert len(text) <= size
    return text[:-1] + b" " * (size - len(text)) + b"}\n"


HEALTH_AT_LIMIT = call("at-limit")
CASES = [
    # Section 7, adapted: "rpc call with named parameters" (and with none, and by position:
    # this runtime takes parameters by name only).
    Case("no-params", line(call(1)), (Result(1),)),
    Case("named-params", line(call("named", params={})), (Result("named"),)),
    Case("by-position", line(call(3, params=[])), (Error(-32602, 3),)),
    # "a Notification" (both examples: a method that exists and one that does not)
    Case("notification", line({"jsonrpc": "2.0", "method": "health_check"}), ()),
    Case("notification-unknown", line({"jsonrpc": "2.0", "method": "foobar"}), ()),
    # "rpc call of non-existent method"
    Case("method-not-found", line(call("1", "foobar")), (Error(-32601, "1"),)),
    # "rpc call with invalid JSON"
    Case("parse-error", b'{"jsonrpc":"2.0","method":"foobar,"params":"bar","baz]\n',
         (Error(-32700, None),)),
    # "rpc call with invalid Request object"
    Case("invalid-request", b'{"jsonrpc":"2.0","method":1,"params":"bar"}\n',
         (Error(-32600, None),)),
    # "rpc call Batch, invalid JSON": one error object, not an array
    Case("batch-parse-error",
         b'[{"jsonrpc":"2.0","method":"sum","params":[1,2,4],"id":"1"},{"jsonrpc":"2.0",'
         b'"method"]\n', (Error(-32700, None),)),
    # "rpc call with an empty Array": one error object, not an array
    Case("empty-batch", b"[]\n", (Error(-32600, None),)),
    # "rpc call with an invalid Batch (but not empty)": an array of one error
    Case("batch-of-one-invalid", b"[1]\n", (batch(Error(-32600, None)),)),
    # "rpc call with invalid Batch": an array of three errors
    Case("batch-of-three-invalid", b"[1,2,3]\n", (batch(*[Error(-32600, None)] * 3),)),
    # "rpc call Batch": calls, a notification (wrong params: still no answer), an invalid
    # request, a missing method, and a second method with a result of its own
    Case("mixed-batch", line([
        call("1", params={}),
        {"jsonrpc": "2.0", "method": "health_check", "params": [7]},
        call("2"),
        {"foo": "boo"},
        call("5", "foo.get", params={"name": "myself"}),
        call("9", "rpc.discover"),
    ]), (batch(Result("1"), Result("2"), Error(-32600, None), Error(-32601, "5"),
               Result("9", "rpc.discover")),)),
    # "rpc call Batch (all notifications)": nothing at all is returned
    Case("batch-all-notifications", line([
        {"jsonrpc": "2.0", "method": "health_check", "params": {}},
        {"jsonrpc": "2.0", "method": "health_check", "params": [7]},
        {"jsonrpc": "2.0", "method": "foobar"},
    ]), ()),
    # -- the wire's edges --
    Case("invalid-utf8", b'{"jsonrpc":"2.0","method":"health_check","id":"\xff"}\n',
         (Error(-32700, None),)),
    # A BOM is not JSON text (RFC 8259 8.1: a parser MAY ignore it; json.loads on a str does
    # not): answered either as the request or as a parse error, but answered.
    Case("utf8-bom", b"\xef\xbb\xbf" + line(call("bom")),
         (one_of(Result("bom"), Error(-32700, None)),)),
    # NaN is not JSON; json reads it as a float by default. Either way an answer: a parse
    # error, or (it parsed) health_check's own error, as it takes no params.
    Case("nan-param", b'{"jsonrpc":"2.0","method":"health_check","params":{"x":NaN},"id":1}\n',
         (one_of(Error(-32602, 1), Error(-32700, None)),)),
    # Deeper than any recursion limit (json's C scanner stops at Python's), and within the
    # line limit here: past it, it would be the line-too-long case.
    Case("deep-nesting", b"[" * (LINE_LIMIT - 96) + b"\n",
         (one_of(Error(-32700, None), Error(-32600, None)),)),
    # An empty line is ignored: no answer; the sentinel after it is answered.
    Case("empty-line", b"\n", ()),
    Case("at-line-limit", padded(HEALTH_AT_LIMIT, LINE_LIMIT), (Result("at-limit"),)),
    Case("past-line-limit", padded(HEALTH_AT_LIMIT, LINE_LIMIT + 1),
         (Error(-32600, None, "line-too-long", {"limit": LINE_LIMIT}),), closes=True),
    Case("batch-at-cap", line([call(i) for i in range(MAX_BATCH)]),
         (batch(*[Result(i) for i in range(MAX_BATCH)]),)),
    Case("batch-past-cap", line([call(i) for i in range(MAX_BATCH + 1)]),
         (Error(-32600, None, "batch-too-large", {"limit": MAX_BATCH}),)),
]
CASES_BY_NAME = {c.name: c for c in CASES}
assert len(CASES_BY_NAME) == len(CASES), "case names are test ids: one each"


# -- running them --------------------------------------------------------------------------
def _strict(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def read_answer(c: Connection, what: str) -> Any:
    """The next answer line, as strict JSON; an AssertionError saying so when there is none."""
    try:
        raw = c.read_line()
    except ConnectionError as exc:
        raise AssertionError(f"dropped: the connection closed instead of {what} ({exc})") \
            from None
    except TimeoutError:
        raise AssertionError(f"no {what} within {c.sock.gettimeout()}s") from None
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_strict)
    except ValueError as exc:  # UnicodeDecodeError included
        raise AssertionError(f"{what} is not a JSON text ({exc}): {raw[:300]!r}") from None


def send(c: Connection, data: bytes, what: str) -> None:
    try:
        c.send_raw(data)
    except ConnectionError as exc:  # a reset or a broken pipe: closed before it was read
        raise AssertionError(f"dropped: the connection closed before {what} ({exc})") from None


def connect(h: ColdHandler) -> Connection:
    try:
        return h.connect()
    except OSError as exc:
        raise AssertionError(f"cannot connect: {exc} (the process: "
                             f"{'running' if h.running() else 'exited'})") from None


def exchange(h: ColdHandler, case: Case) -> None:
    """``case`` on a connection of its own: its answers, then the sentinel's (or the close)."""
    with connect(h) as c:
        send(c, case.send, "the case was sent")
        for n, expect in enumerate(case.answers, 1):
            answer = read_answer(c, f"answer {n} of {len(case.answers)}")
            expect.check(answer, h.service, h.pid)
        if case.closes:
            try:
                extra = c.read_line()
            except ConnectionError:  # EOF, or a reset: closed either way
                return
            except TimeoutError:
                raise AssertionError("the connection was not closed") from None
            raise AssertionError(f"an answer more before the close: {extra[:300]!r}")
        # Answers on a connection come in order: the sentinel's must be the next line, so
        # nothing was sent for a notification or an empty line.
        send(c, SENTINEL, "a health_check after the case was sent")
        answer = read_answer(c, "the answer to a health_check sent after the case")
        if isinstance(answer, dict) and answer.get("id") == "sentinel":
            Result("sentinel").check(answer, h.service, h.pid)
        else:
            raise AssertionError(f"an answer nobody asked for: {answer!r}")


def still_serving(h: ColdHandler) -> None:
    """The same process answers a health check on a new connection."""
    with connect(h) as c:
        send(c, ALIVE, "a health_check was sent")
        Result("alive").check(read_answer(c, "a health_check's answer"), h.service, h.pid)


def logged_exception(log: str) -> str | None:
    """The first exception the handler logged with its traceback (``SystemError: ...``)."""
    lines = log.splitlines()
    for i, text in enumerate(lines):
        if text.startswith("Traceback"):
            return next((t for t in lines[i + 1:] if t and not t[0].isspace()), "?")
    return None


def _with_log(exc: AssertionError, log: str) -> AssertionError:
    first, _, rest = str(exc).partition("\n")
    logged = logged_exception(log)
    if logged is not None:
        first += f" [the handler logged {logged}]"
    return AssertionError(f"{first}\n{rest}\n--- the handler's output (end) ---\n{log[-3000:]}")


def run_cold(service: str, case: Case, env: dict[str, str], runtime: Path, log: Path) -> None:
    """``case`` as the first line of a fresh ``service`` process."""
    h = ColdHandler(service, runtime / f"{service}.sock", env, log)
    failure = None
    try:
        exchange(h, case)
        still_serving(h)
    except AssertionError as exc:
        failure = exc
    finally:
        out = h.stop()
    if failure is not None:
        raise _with_log(failure, out)
    if "Traceback" in out:
        raise AssertionError(f"answered as specified, but the handler logged "
                             f"{logged_exception(out)}:\n{out[-3000:]}")


# What the warm process must do besides the cases, as rows of the matrix.
HEALTH_BEFORE, HEALTH_AFTER = "(health_check before the cases)", "(health_check after them)"
NO_TRACEBACK = "(no traceback logged)"


def run_warm(service: str, cases: list[Case], env: dict[str, str], runtime: Path,
             log: Path) -> dict[str, str | None]:
    """Every case in turn on one ``service`` process that has answered a health check first:
    case name -> None when answered as specified, else what was wrong."""
    h = ColdHandler(service, runtime / f"{service}.sock", env, log)
    outcome: dict[str, str | None] = {}
    steps = [(HEALTH_BEFORE, still_serving),
             *[(case.name, lambda h, case=case: exchange(h, case)) for case in cases],
             (HEALTH_AFTER, still_serving)]
    try:
        for name, step in steps:
            try:
                if not h.running():
                    raise AssertionError(f"the process had exited (status {h.proc.returncode})")
                step(h)
                outcome[name] = None
            except AssertionError as exc:
                outcome[name] = str(exc)
    finally:
        out = h.stop()
    outcome[NO_TRACEBACK] = None
    if "Traceback" in out:
        outcome[NO_TRACEBACK] = f"the handler logged {logged_exception(out)}:\n{out[-3000:]}"
    return outcome


# -- the tests -------------------------------------------------------------------------------
MATRIX = [pytest.param(service, case, id=f"{service}-{case.name}")
          for service in SERVICES for case in CASES]


@pytest.mark.parametrize("service,case", MATRIX)
def test_cold(service, case, runtime_dir, tmp_path):
    run_cold(service, case, handler_env(**SETTINGS_ENV), runtime_dir, tmp_path / "handler.log")


@pytest.mark.parametrize("service", list(SERVICES))
def test_warm(service, runtime_dir, tmp_path):
    outcome = run_warm(service, CASES, handler_env(**SETTINGS_ENV), runtime_dir,
                       tmp_path / "handler.log")
    failed = {name: why for name, why in outcome.items() if why is not None}
    assert not failed, "\n".join(f"{name}: {why}" for name, why in failed.items())


def test_the_line_limit_cases_are_one_byte_apart():
    at, past = CASES_BY_NAME["at-line-limit"].send, CASES_BY_NAME["past-line-limit"].send
    assert len(at) - 1 == LINE_LIMIT and len(past) - 1 == LINE_LIMIT + 1
    assert json.loads(at) == json.loads(past) == HEALTH_AT_LIMIT


# -- the matrix, as a table ----------------------------------------------------------------
def _isolated_env(root: Path) -> dict[str, str]:
    """What conftest's ``clean_environ`` gives a test: no inherited TRADING_/LISTEN_
    variables, private directories (a short runtime path: socket paths have 108 bytes)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith((
        "TRADING_", "LISTEN_", "NOTIFY_SOCKET", "WATCHDOG_", "JOURNAL_STREAM",
        "STATE_DIRECTORY", "CACHE_DIRECTORY"))}
    runtime = Path(tempfile.mkdtemp(prefix="tr-"))
    env.update(TRADING_RUNTIME_DIR=str(runtime), TRADING_STATE_DIR=str(root / "state"),
               TRADING_CACHE_DIR=str(root / "cache"), TRADING_CONFIG=str(root / "config.toml"),
               **SETTINGS_ENV)
    return env


def matrix(services: list[str]) -> dict[tuple[str, str, str], str | None]:
    """(service, case, "cold"|"warm") -> None when answered as specified, else why not."""
    outcome: dict[tuple[str, str, str], str | None] = {}
    with tempfile.TemporaryDirectory(prefix="conformance-") as tmp:
        for service in services:
            for case in CASES:
                root = Path(tmp) / f"{service}-{case.name}"
                env = _isolated_env(root)
                runtime = Path(env["TRADING_RUNTIME_DIR"])
                try:
                    run_cold(service, case, env, runtime, Path(tmp) / "handler.log")
                    outcome[service, case.name, "cold"] = None
                except AssertionError as exc:
                    outcome[service, case.name, "cold"] = str(exc)
                finally:
                    shutil.rmtree(runtime, ignore_errors=True)
            env = _isolated_env(Path(tmp) / f"{service}-warm")
            runtime = Path(env["TRADING_RUNTIME_DIR"])
            try:
                warm = run_warm(service, CASES, env, runtime, Path(tmp) / "handler.log")
            finally:
                shutil.rmtree(runtime, ignore_errors=True)
            for name, why in warm.items():
                outcome[service, name, "warm"] = why
    return outcome


def table(services: list[str], outcome: dict[tuple[str, str, str], str | None]) -> str:
    """A Markdown table (case x service, cold and warm: answered as specified, yes/no), and
    the first line of each failure under it."""
    names = [c.name for c in CASES] + [n for n in dict.fromkeys(n for (_, n, _) in outcome)
                                       if n not in CASES_BY_NAME]
    head = ["case"] + [f"{s} {mode}" for s in services for mode in ("cold", "warm")]
    rows = [head, ["---"] * len(head)]
    for name in names:
        row = [name]
        for s in services:
            for mode in ("cold", "warm"):
                key = (s, name, mode)
                row.append("-" if key not in outcome else "no" if outcome[key] else "yes")
        rows.append(row)
    lines = ["| " + " | ".join(r) + " |" for r in rows]
    failures = [f"- {s} / {n} / {m}: {why.splitlines()[0]}"
                for (s, n, m), why in outcome.items() if why]
    if failures:
        lines += ["", "Not as specified:", *failures]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--matrix", action="store_true", required=True,
                        help="run every case cold and warm and print the table")
    parser.add_argument("--service", action="append", choices=list(SERVICES),
                        help="only this service (repeatable; default: all)")
    args = parser.parse_args(argv)
    if not __debug__:
        parser.error("run without -O: the checks are assert statements")
    services = args.service or list(SERVICES)
    t0 = time.monotonic()
    outcome = matrix(services)
    print(table(services, outcome))
    print("\n(A cold cell also requires that the handler logged no traceback.)")
    print(f"\n{len(outcome)} runs in {time.monotonic() - t0:.0f}s, LINE_LIMIT={LINE_LIMIT}, "
          f"MAX_BATCH={MAX_BATCH}, {sys.version.split()[0]}")
    return 1 if any(outcome.values()) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
