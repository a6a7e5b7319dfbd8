"""Hostile input, driven by hypothesis, against LIVE handler processes over their sockets.

Each test starts one real handler (market-data, prediction, sentiment, training) under
``systemd-socket-activate`` and feeds it thousands of generated lines: malformed JSON,
oversized lines, deep nesting, wrong types, invalid UTF-8, NUL bytes, and hostile symbols and
sources (``../../etc/passwd``, SQL, shell metacharacters) in every parameter of every method,
and valid symbols beside a hostile other parameter (a period, a source, a date, a count).
What must hold for every input:

- the handler answers each line that asked for an answer with a well-formed JSON-RPC 2.0
  response: an error object (int code, str message) or a result; never an internal error
  (-32603, a bug) and never silence; notifications get nothing, as the spec says;
- the same process is still serving after every input (a sentinel request on the same
  connection, or a new one when the handler closed it after an over-long line);
- nothing reaches the store or the file system: the row count of every table and a snapshot
  of the state, cache and runtime directories are the same before and after.

The process above has answered a health check and a valid call before the first generated
line, as a client would find it. Cold processes are fuzzed too (``test_fuzz_cold[<service>]``):
each generated example is a few lines sent to a fresh process started as its unit starts it
(:class:`support.cold.ColdHandler`, the venv's ``trading-<service>`` under
``systemd-socket-activate``), the first of them the first line that process ever reads. An
error path that needs a module no earlier request happened to load fails only there. Each
line gets valid JSON-RPC answers (none for a notification) and the same process answers a
health check after every line and after the last.

The number of inputs tried is printed (``-s`` shows it); ``TRADING_FUZZ_EXAMPLES`` sets how
many per handler (default 1500), ``TRADING_FUZZ_COLD_EXAMPLES`` how many cold processes per
handler (default 60).
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.cold import ColdHandler, handler_env
from support.wire import Connection
from trading.errors import InvalidSymbol
from trading.handlers import SERVICES
from trading.market.symbols import normalize

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("TRADING_FUZZ_EXAMPLES", "1500"))
COLD_EXAMPLES = int(os.environ.get("TRADING_FUZZ_COLD_EXAMPLES", "60"))  # ~0.1-0.3 s each
LINE_LIMIT = 65536  # the handlers run with this limit so over-long lines are cheap to make
HANDLER_ENV = {"TRADING_SOURCE": "sample", "TRADING_NEWS_SOURCE": "sample",
               "TRADING_LINE_LIMIT": str(LINE_LIMIT), "TRADING_IN_PROCESS": "never"}
SENTINEL = b'{"jsonrpc":"2.0","id":"sentinel","method":"health_check"}\n'

HOSTILE = [
    "../../etc/passwd", "/etc/passwd", "..", ".", "~root", "CBA.AX/../../x", "CBA\\..\\x",
    "'; DROP TABLE predictions; --", "CBA' OR '1'='1", "\" OR 1=1 --", "x'); DELETE FROM bars;--",
    "$(rm -rf /)", "`reboot`", "CBA; rm -rf ~", "CBA && touch /tmp/pwned", "| cat /etc/shadow",
    "%s%s%s%n", "{0.__class__}", "\x00", "CBA\x00.AX", "\n", "\r\nCBA", "\u202eXAC", "CBA\u200b",
    "😀", "Ｃ" * 3, "A" * 5000, "", " ", "^", "^" + "A" * 11, "^AX JO", "-1", "1e308", "NaN",
    "null", "None", "csv:/etc", "csv:../../etc", "csv:/", "file:///etc/passwd",
    "http://127.0.0.1:1/", "yahoo; ls", "sample\x00", "*", "%", "_", "CBA%", "\\x41",
]
SOURCES = ["csv:/etc", "csv:/", "csv:..", "csv:../../etc", "csv:/proc/self", "csv:",
           "../../etc/passwd", "yahoo\x00", "sample; rm -rf /", "$(id)", "http://x", "", " "]


def invalid(text: str) -> bool:
    """True when ``text`` is not a symbol the service would fetch (so nothing may be stored)."""
    try:
        normalize(text)
    except InvalidSymbol:
        return True
    return False


def refused(source: str) -> bool:
    from trading.errors import InvalidParams
    from trading.market.sources import resolve

    try:
        resolve(source, Path("/nonexistent"))
    except InvalidParams:
        return True
    return False


# Values of the wrong type, hostile strings, and deep structures for any parameter.
hostile_text = st.one_of(st.sampled_from([h for h in HOSTILE if invalid(h)]),
                         st.text(max_size=40).filter(invalid),
                         st.text(alphabet="./;'\"`$|&<>\\%*\x00 \n", max_size=20))
scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
                    st.floats(allow_nan=False, allow_infinity=False), hostile_text)


def nested(depth: int):
    return st.recursive(scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(hostile_text, inner, max_size=4)),
        max_leaves=depth)


values = nested(12)
# A symbol list that is never all valid: a valid one would be fetched from the source and
# stored, which is a result, not an attack.
symbol_lists = st.lists(st.one_of(hostile_text, scalars.filter(lambda v: not isinstance(v, str)),
                                  nested(4)), min_size=0, max_size=6)
sources = st.one_of(st.none(), st.sampled_from(SOURCES), values)
# Where an omitted or null source would make a valid call (the configured source, fetched and
# stored), only hostile ones.
# (``csv:/etc`` is a valid source, an existing absolute directory: asking it for the index is a
# valid call, so only the sources resolve() refuses are used there.)
bad_sources = st.one_of(st.sampled_from([s for s in SOURCES if refused(s)]),
                        values.filter(lambda v: v is not None))


# Valid symbols beside hostile other parameters: the symbol check passes, so the hostile
# value must be caught by the rule of its own parameter, before anything is fetched or stored.
valid_symbol = st.sampled_from(["CBA", "bhp", "NAB.AX", "wbc.ax"])
valid_symbols = st.lists(valid_symbol, min_size=1, max_size=3)
not_a_date = values.filter(lambda v: v is not None)
WITH_VALID_SYMBOLS = {
    "get_market_data": [{"symbol": valid_symbol, "source": bad_sources}],
    "bulk_fetch": [{"symbols": valid_symbols, "source": bad_sources}],
    "get_bars": [{"symbol": valid_symbol, "period": hostile_text | values.filter(
                     lambda v: not isinstance(v, str))},
                 {"symbol": valid_symbol, "interval": hostile_text},
                 {"symbol": valid_symbol, "source": bad_sources}],
    "generate_predictions": [{"symbols": valid_symbols, "source": bad_sources}],
    "history": [{"symbol": valid_symbol, "since": values, "limit": values}],
    "get_prediction": [{"symbol": valid_symbol}],
    "events": [{"after_id": st.one_of(values, st.sampled_from([2**63, -2**63 - 1, 2**64, 10**30]))}],
    "train": [{"symbols": valid_symbols, "horizon": values},
              {"symbols": valid_symbols, "folds": values},
              {"symbols": valid_symbols, "end": not_a_date},
              {"symbols": valid_symbols, "end": st.sampled_from(["0001-01-01", "9999-12-31",
                                                                  "1899-12-31"])},
              {"symbols": valid_symbols, "source": bad_sources}],
    "backtest": [{"symbols": valid_symbols, "start": not_a_date},
                 {"symbols": valid_symbols, "end": st.sampled_from(["0001-01-01", "9999-12-31"])},
                 {"symbols": valid_symbols, "cost_bps": values},
                 {"symbols": valid_symbols, "source": bad_sources}],
}


def params_for(method: str):
    """Hostile parameters for ``method``, by name (and sometimes as the wrong shape)."""
    symbol = hostile_text | values
    required, optional = {
        "get_market_data": ({}, {"symbol": symbol, "source": sources}),
        "bulk_fetch": ({}, {"symbols": symbol_lists | values, "source": sources}),
        "get_market_context": ({"source": bad_sources}, {}),
        "get_bars": ({}, {"symbol": symbol, "interval": symbol, "period": symbol,
                          "source": sources}),
        "generate_predictions": ({}, {"symbols": symbol_lists | values, "source": sources}),
        "get_prediction": ({}, {"symbol": symbol}),
        "history": ({}, {"symbol": symbol, "since": symbol, "limit": values}),
        "events": ({}, {"after_id": values, "type": symbol, "limit": values, "latest": values}),
        "accuracy_report": ({}, {"origin": symbol}),
        # A replay's jobs: hostile markets for the configured predictor (the rules, here).
        "run_predictor": ({}, {"jobs": values | st.lists(st.fixed_dictionaries(
            {"symbol": valid_symbol | symbol, "key": symbol, "market": values},
            optional={"sentiment": values, "model": values}), max_size=3),
            "predictor": symbol}),
        "check_predictor": ({}, {"predictor": symbol}),
        "evaluate_outcomes": ({}, {"source": sources}),
        "analyze_sentiment": ({}, {"symbol": symbol, "source": sources}),
        "analyze_bulk": ({}, {"symbols": symbol_lists | values, "source": sources}),
        "score_text": ({}, {"texts": values}),
        # Training: none of these may start a job (the handler has no market-data peer here,
        # so one that got through would be an unavailable error, and the rows would show it).
        "train": ({}, {"symbols": symbol_lists | values, "horizon": values, "source": sources,
                       "folds": values, "end": values}),
        "backtest": ({}, {"symbols": symbol_lists | values, "start": values, "end": values,
                          "source": sources, "cost_bps": values, "use_model": values,
                          "interval": symbol}),
        "activate": ({"version": hostile_text}, {}),
        "models": ({}, {}),
        "progress": ({}, {}),
        "cancel": ({}, {}),
    }.get(method, ({}, {}))
    fields = st.fixed_dictionaries(required, optional=optional)
    with_valid = [st.fixed_dictionaries(d) for d in WITH_VALID_SYMBOLS.get(method, [])]
    extra = st.dictionaries(hostile_text, values, max_size=2)
    shapes = [fields, st.builds(lambda a, b: {**a, **b}, fields, extra), *with_valid]
    if not required:  # a wrong shape would fall back to the defaults of a required one
        shapes += [st.lists(values, max_size=3), values]
    return st.one_of(*shapes)


def requests(methods: list[str]):
    """Whole request lines: well-framed JSON with hostile content, and broken framing."""
    method = st.sampled_from(methods + ["rpc.discover", "health_check", "nope", "__init__",
                                        "_gather", "close", "dispatcher", "rpc.", ""])
    ids = st.one_of(st.integers(), st.text(max_size=8), st.just(None), st.floats(allow_nan=False))
    request = st.builds(
        lambda m, p, i, v, keep: {k: x for k, x in
                                  {"jsonrpc": v, "id": i, "method": m, "params": p}.items()
                                  if k in keep},
        method, method.flatmap(params_for), ids,
        st.sampled_from(["2.0", "2.0", "2.0", "1.0", 2.0, None]),
        st.sets(st.sampled_from(["jsonrpc", "id", "method", "params"])).map(
            lambda keep: keep | {"jsonrpc", "id", "method"}) | st.sets(
            st.sampled_from(["jsonrpc", "id", "method", "params"])))
    # Most envelopes are right, so the hostile parameters reach the methods themselves.
    proper = st.sampled_from(methods).flatmap(lambda m: st.builds(
        lambda p, i: {"jsonrpc": "2.0", "id": i, "method": m, "params": p},
        params_for(m), st.one_of(st.integers(), st.text(max_size=8))))
    request = st.one_of(proper, proper, proper, request)
    as_json = request.map(lambda r: json.dumps(r).encode())
    batch = st.lists(request, min_size=0, max_size=5).map(lambda b: json.dumps(b).encode())
    raw = st.one_of(
        st.binary(max_size=200),                                          # anything at all
        st.binary(max_size=60).map(lambda b: b'{"jsonrpc":"2.0","id":1,"method":"' + b + b'"}'),
        st.sampled_from([b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"{\x00}", b"\x00" * 50,
                         b'{"jsonrpc":"2.0","id":1,"method":"health_check"', b"[]", b"[1,2]",
                         b"{}", b"null", b"1", b'"x"', b"{'a':1}", b"NaN", b"Infinity",
                         b'{"jsonrpc":"2.0","id":1e999,"method":"health_check"}',
                         b'{"jsonrpc":"2.0","id":1,"method":"health_check","params":NaN}',
                         b'{"jsonrpc":"2.0","id":"\\ud800","method":"\\udfff"}']),
        as_json.map(lambda b: b.replace(b"2.0", b"2.0\x00", 1)),           # a NUL inside
        as_json.map(lambda b: b[: max(1, len(b) // 2)]),                  # cut short
        st.integers(min_value=1, max_value=20000).map(                    # deep nesting
            lambda n: b"[" * n + b"]" * n),
        st.integers(min_value=500, max_value=20000).map(
            lambda n: b'{"jsonrpc":"2.0","id":1,"method":"bulk_fetch","params":{"symbols":'
                      + b"[" * n + b"]" * n + b"}}"),
        st.integers(min_value=LINE_LIMIT - 10, max_value=3 * LINE_LIMIT).map(  # oversized
            lambda n: b'{"jsonrpc":"2.0","id":1,"method":"get_market_data","params":{"symbol":"'
                      + b"A" * n + b'"}}'),
    )
    return st.one_of(as_json, as_json, batch, raw)


def valid_response(r) -> bool:
    if not isinstance(r, dict) or r.get("jsonrpc") != "2.0" or "id" not in r:
        return False
    if "error" in r:
        e = r["error"]
        return ("result" not in r and isinstance(e, dict) and isinstance(e.get("code"), int)
                and isinstance(e.get("message"), str) and e["message"] != "")
    return "result" in r


class Prober:
    """One line at a time over a live connection, then the sentinel to prove it still serves."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn: Connection | None = None
        self.pid: int | None = None
        self.tried = 0
        self.errors: dict[int, int] = {}

    def _connect(self) -> Connection:
        if self.conn is None:
            self.conn = Connection.open(self.path, timeout=30)
        return self.conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def _until_sentinel(self):
        while True:
            try:
                raw = self.conn.read_line()
            except ConnectionError:
                # Closed, or reset: the handler closed with our unread bytes (the rest of an
                # over-long line) still queued, which Linux reports as a reset after the data
                # it did send.
                return
            yield raw
            if b'"id":"sentinel"' in raw:
                return

    def send(self, line: bytes) -> list:
        """Send one input line and the sentinel; the answers before the sentinel's."""
        self.tried += 1
        c = self._connect()
        if b"\n" in line:
            line = line.replace(b"\n", b" ")  # one input is one line
        try:
            c.send_raw(line + b"\n" + SENTINEL)
        except (BrokenPipeError, ConnectionResetError):
            pass  # it closed on an over-long line before reading all of it; answered below
        answers = []
        for raw in self._until_sentinel():
            msg = json.loads(raw)  # every answer line is JSON (invalid UTF-8 would raise)
            if isinstance(msg, dict) and msg.get("id") == "sentinel":
                assert msg["result"]["pid"] == self.pid, "a different process answered"
                return answers
            answers.append(msg)
        # Closed before the sentinel: only allowed after an over-long line, with its error.
        assert len(line) > LINE_LIMIT, (line[:200], answers)
        assert [a["error"]["data"]["problem"] for a in answers] == ["line-too-long"], answers
        self.close()
        return answers

    def check(self, line: bytes) -> None:
        for answer in self.send(line):
            items = answer if isinstance(answer, list) else [answer]
            assert items, "an empty batch answer"
            for r in items:
                assert valid_response(r), (line[:300], r)
                if "error" in r:
                    code = r["error"]["code"]
                    self.errors[code] = self.errors.get(code, 0) + 1
                    assert code != -32603, ("internal error (a bug)", line[:300], r)


def snapshot(dirs: list[Path], db: Path) -> dict:
    """Files (size, mtime) under ``dirs``, and every table's rows (count and a digest).

    The store's own files are compared by content, not bytes: SQLite checkpoints committed
    pages from the WAL into the main file whenever a connection closes, which moves bytes
    without changing a row."""
    import hashlib

    files = {}
    for d in dirs:
        for p in sorted(d.rglob("*")) if d.exists() else []:
            if p.name.startswith(db.name):
                files[str(p)] = "store"
                continue
            st_ = p.lstat()
            files[str(p)] = (p.is_dir() or st_.st_size, st_.st_mtime_ns)
    rows = {}
    if db.exists():
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            tables = conn.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall()
            rows["schema"] = hashlib.sha256(repr(tables).encode()).hexdigest()[:12]
            for name, _ in tables:
                if _ is None or not _.startswith("CREATE TABLE"):
                    continue
                content = conn.execute(f'SELECT * FROM "{name}" ORDER BY 1').fetchall()
                rows[name] = (len(content), hashlib.sha256(repr(content).encode()).hexdigest()[:12])
    return {"files": files, "rows": rows}


def fuzz(activate, service: str, methods: list[str], warm: list[bytes], seed=None) -> Prober:
    from trading import config

    os.environ.update(HANDLER_ENV)
    config.reset()
    cfg = config.get()
    if seed is not None:
        seed(cfg)
    h = activate(service, idle_exit=600)
    prober = Prober(h.path)
    first = _one(h.path, SENTINEL)
    prober.pid = first["result"]["pid"]
    for line in warm:  # what a real client does first; the store exists from here on
        assert "result" in _one(h.path, line), line
    dirs = [cfg.state_dir, cfg.cache_dir, cfg.runtime_dir]
    before = snapshot(dirs, cfg.db_path)

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=False, database=None,
              suppress_health_check=list(HealthCheck))
    @given(line=requests(methods))
    def one(line: bytes) -> None:
        prober.check(line)

    try:
        one()
    except BaseException:
        print(h.stop()[-5000:])  # the handler's side of the failure
        raise
    finally:
        prober.close()
    after = snapshot(dirs, cfg.db_path)
    assert after["rows"] == before["rows"]
    assert after["files"] == before["files"]
    assert _one(h.path, SENTINEL)["result"]["pid"] == prober.pid
    log = h.stop()
    assert h.proc.returncode == 0, log[-3000:]  # it stopped cleanly when asked
    assert "Traceback" not in log, log[-3000:]
    total = sum(n for n, _ in (v for k, v in after["rows"].items() if k != "schema"))
    print(f"\n{service}: {prober.tried} inputs, all answered; error codes "
          f"{dict(sorted(prober.errors.items()))}; {total} store rows and "
          f"{len(after['files'])} files unchanged")
    return prober


def _one(path: Path, line: bytes) -> dict:
    """One request line, ready-made, on a connection of its own; the answer."""
    with Connection.open(path, timeout=30) as c:
        c.send_raw(line)
        return c.read()


MARKET = ["get_market_data", "bulk_fetch", "get_market_context", "get_bars"]
PREDICTION = ["generate_predictions", "get_prediction", "history", "events", "accuracy_report",
              "run_predictor", "check_predictor",
              "evaluate_outcomes"]
SENTIMENT = ["analyze_sentiment", "analyze_bulk", "score_text"]
TRAINING = ["train", "backtest", "models", "activate", "progress", "cancel"]


def req(method: str, **params) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode() \
        + b"\n"


def test_fuzz_market_data(activate):
    # A valid call first, so the store and its cache tables exist and hold rows to protect.
    fuzz(activate, "market-data", MARKET, [req("get_market_data", symbol="CBA")])


def seed_predictions(cfg) -> None:
    """Stored predictions and their events (the real record()), for an attack to aim at."""
    from trading.signals import ledger
    from trading.signals.events import now_iso
    from trading.runtime.store import Store

    store = Store(cfg.db_path)
    made = [{"symbol": s, "created_at": now_iso(), "action": "BUY", "confidence": 0.7,
             "reasons": ["seed"]} for s in ("CBA.AX", "BHP.AX", "NAB.AX")]
    ledger.record(store, made, {}, source="sample", run_id=ledger.new_run_id())
    store.close()


def test_fuzz_prediction(activate):
    fuzz(activate, "prediction", PREDICTION, [req("history", limit=5)], seed=seed_predictions)


def test_fuzz_sentiment(activate):
    fuzz(activate, "sentiment", SENTIMENT, [req("analyze_sentiment", symbol="CBA")])


def test_fuzz_training(activate):
    fuzz(activate, "training", TRAINING, [req("models")])


METHODS = {"market-data": MARKET, "sentiment": SENTIMENT, "prediction": PREDICTION,
           "training": TRAINING}


@pytest.mark.parametrize("service", list(SERVICES))
def test_fuzz_cold(service, runtime_dir, tmp_path):
    """Generated lines to fresh processes, each example's first line the process's first."""
    methods = METHODS[service]  # a service added to the registry needs its methods here
    env = handler_env(**HANDLER_ENV)
    log = tmp_path / "handler.log"
    tried: list[Prober] = []

    @settings(max_examples=COLD_EXAMPLES, deadline=None, derandomize=False, database=None,
              suppress_health_check=list(HealthCheck))
    @given(lines=st.lists(requests(methods), min_size=1, max_size=5))
    def one(lines: list[bytes]) -> None:
        h = ColdHandler(service, runtime_dir / f"{service}.sock", env, log)
        prober = Prober(h.path)
        prober.pid = h.pid  # systemd-socket-activate execs the handler in its own process
        tried.append(prober)
        try:
            prober.conn = h.connect(timeout=30)  # this connection starts the handler
            for line in lines:
                prober.check(line)
            prober.close()
            assert _one(h.path, SENTINEL)["result"]["pid"] == h.pid
        except BaseException:
            prober.close()
            print(h.stop()[-5000:])  # the handler's side of the failure
            raise
        out = h.stop()
        assert h.proc.returncode == 0, out[-3000:]  # it stopped cleanly when asked
        assert "Traceback" not in out, out[-3000:]

    one()
    errors: dict[int, int] = {}
    for p in tried:
        for code, n in p.errors.items():
            errors[code] = errors.get(code, 0) + n
    print(f"\n{service}, cold: {len(tried)} fresh processes, {sum(p.tried for p in tried)} "
          f"inputs, all answered; error codes {dict(sorted(errors.items()))}")


def test_bulk_fetch_of_only_bad_symbols_fetches_and_stores_nothing(activate, tmp_path):
    """Not even the index: bad input reaches no source, and no row records that it was asked."""
    from trading import config

    csv_dir = tmp_path / "csv"
    csv_dir.mkdir()
    config.reset()
    cfg = config.get()
    h = activate("market-data", idle_exit=60)
    line = req("bulk_fetch", symbols=["../../etc/passwd", "'; DROP TABLE bars; --", "$(id)"],
               source=f"csv:{csv_dir}")
    answer = _one(h.path, line)["result"]
    assert answer["results"] == {} and len(answer["errors"]) == 3
    assert answer["market_context"]["fallback"] is True
    if cfg.db_path.exists():  # (it is not even opened)
        with sqlite3.connect(cfg.db_path) as conn:
            assert conn.execute("SELECT count(*) FROM upstream").fetchone()[0] == 0
            assert conn.execute("SELECT count(*) FROM bars").fetchone()[0] == 0
