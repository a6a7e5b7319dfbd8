"""The shape the rest builds on: services get their context, one framing on both ends, the
runtime knows no handler, one rule per parameter, errors that survive the wire."""

from __future__ import annotations

import ast
import json
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from conftest import REPO
from trading import config
from trading.errors import (EXIT_MEANINGS, Exit, InvalidParams, NotFound, RPCError,
                            ServiceUnavailable)
from trading.runtime.client import Client
from trading.runtime.service import Context


# -- a service gets its context ---------------------------------------------------------------
class FakePeers:
    """Answers bulk_fetch from a sample-data market-data built here, and records every call."""

    def __init__(self, cfg):
        from trading.handlers.market_data import MarketData

        self.market = MarketData(Context(cfg))
        self.calls: list[tuple[str, str]] = []

    def call(self, service, method, params=None, *, timeout=None):
        self.calls.append((service, method))
        if service == "sentiment":
            raise ServiceUnavailable("sentiment is switched off in this test")
        return getattr(self.market, method)(**params)

    def close(self):
        self.market.close()


def test_a_service_is_built_with_fake_peers_and_notify_and_no_global(tmp_path):
    from trading.handlers.prediction import Prediction
    from trading.runtime.store import Store

    cfg = config.get()
    peers, notes, stores = FakePeers(cfg), [], []

    def store_factory():
        stores.append(Store(tmp_path / "own.db"))
        return stores[-1]

    svc = Prediction(Context(cfg, peers=peers, notify=notes.append, store_factory=store_factory))
    try:
        out = svc.generate_predictions(["CBA", "nope!"], source="sample")
        assert list(out["results"]) == ["CBA.AX"]
        assert out["errors"]["nope!"]["problem"] == "invalid-symbol"
        assert peers.calls == [("market-data", "bulk_fetch"), ("sentiment", "analyze_bulk")]
        assert "sentiment unavailable" in out["results"]["CBA.AX"]["reasons"][0]
        # The store it wrote is the one the factory opened, not the configured path (which
        # only the fake market-data used, for its bar cache).
        assert len(stores) == 1
        assert stores[0].query("SELECT COUNT(*) AS n FROM predictions")[0]["n"] == 1
        assert peers.market.store.query("SELECT COUNT(*) AS n FROM predictions")[0]["n"] == 0
    finally:
        svc.close()
        peers.close()


def test_a_service_built_without_peers_says_so():
    from trading.handlers.prediction import Prediction

    svc = Prediction()
    with pytest.raises(RPCError, match="market-data is not (reachable|available)"):
        svc.generate_predictions(["CBA"], source="sample")
    svc.close()


def test_a_client_without_a_local_transport_never_runs_a_handler_in_process():
    c = Client(config.get())  # auto, but nobody gave it the registry
    with pytest.raises(ServiceUnavailable, match="no in-process fallback"):
        c.call("market-data", "health_check")


def test_nothing_under_the_runtime_imports_a_handler():
    runtime = REPO / "lib" / "runtime"
    for path in runtime.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            assert not any(n.startswith(("trading.handlers", "trading.cli")) for n in names), \
                f"{path.name} imports {names}"
    # and at run time: the whole runtime loaded, no handler with it
    code = ("import sys, trading.runtime.activation, trading.runtime.client, "
            "trading.runtime.service, trading.runtime.store, trading.runtime.access; "
            "print(sorted(m for m in sys.modules if m.startswith(('trading.handlers', "
            "'trading.cli'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- the library's import graph ----------------------------------------------------------------
# The one module under lib/ that may name the handlers: the dashboard's entry point (the
# `trading-web` script trading-web.service runs, and `python -m trading.web`), which gives it
# the handlers' registry as trading.handlers.main gives a handler its peers'. No module
# imports it.
ENTRY_POINTS = {"trading.web.__main__"}


def _library_modules() -> dict[str, Path]:
    """Every module under lib/ by its import name (lib/ is the ``trading`` package)."""
    out = {}
    for path in (REPO / "lib").rglob("*.py"):
        parts = ("trading", *path.relative_to(REPO / "lib").with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """What ``name`` imports, at module level and inside functions alike: ``from A import b``
    is the module ``A.b`` when there is one, else ``A``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for a in node.names:
                found.add(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base)
    return found


def test_the_library_imports_no_handler_or_cli_and_has_no_import_cycle():
    modules = _library_modules()
    graph = {}
    for name, path in modules.items():
        imported = _imports(name, path, modules)
        outward = sorted(i for i in imported if i.startswith(("trading.handlers", "trading.cli")))
        allowed = name in ENTRY_POINTS and all(i.startswith("trading.handlers") for i in outward)
        assert not outward or allowed, f"{path.relative_to(REPO)} imports {outward}"
        graph[name] = {i for i in imported if i in modules and i != name}
    assert not [m for m, deps in graph.items() if deps & ENTRY_POINTS], "an entry point imported"
    # Depth-first; a module met again while it is still on the path closes a cycle.
    done: set[str] = set()
    for root in sorted(graph):
        if root in done:
            continue
        path, todo = [root], [iter(sorted(graph[root]))]
        while todo:
            child = next(todo[-1], None)
            if child is None:
                todo.pop()
                done.add(path.pop())
            elif child in path:
                pytest.fail("import cycle: " + " -> ".join(path[path.index(child):] + [child]))
            elif child not in done:
                path.append(child)
                todo.append(iter(sorted(graph[child])))


def test_no_library_module_is_long_without_saying_why():
    for path in (REPO / "lib").rglob("*.py"):
        lines = path.read_text().count("\n")
        if lines > 400:
            doc = ast.get_docstring(ast.parse(path.read_text())) or ""
            # "is long" as a phrase: "LineTooLong" or "belongs" once passed for a reason.
            assert re.search(r"\bis long\b", doc), \
                f"{path.relative_to(REPO)}: {lines} lines, no reason given"


# -- one framing on both ends ----------------------------------------------------------------
def _one_shot_server(path: Path, reply: bytes) -> threading.Thread:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)

    def serve():
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            try:
                conn.sendall(reply)
            except OSError:
                pass  # the client hung up once it had seen enough
        listener.close()

    t = threading.Thread(target=serve)
    t.start()
    return t


def test_a_reply_past_the_limit_is_a_clear_error_not_an_unbounded_buffer(monkeypatch, runtime_dir):
    monkeypatch.setenv("TRADING_REPLY_LIMIT", "4096")
    config.reset()
    t = _one_shot_server(runtime_dir / "market-data.sock", b"[" + b"1," * 50_000 + b"1]\n")
    c = Client(config.get(), in_process="never")
    with pytest.raises(ServiceUnavailable, match="longer than 4096 bytes"):
        c.call("market-data", "health_check")
    c.close()
    t.join(5)


def test_replies_split_across_reads_and_blank_lines_are_framed_once(runtime_dir):
    answer = json.dumps({"jsonrpc": "2.0", "result": {"ok": True}, "id": 1}).encode()
    t = _one_shot_server(runtime_dir / "market-data.sock", b"\n" + answer + b"\n")
    c = Client(config.get(), in_process="never")
    assert c.call("market-data", "health_check") == {"ok": True}
    c.close()
    t.join(5)


# -- errors ---------------------------------------------------------------------------------
def test_an_error_whose_data_has_message_and_code_keys_comes_back_whole():
    wire = {"code": -32001, "message": "no such thing",
            "data": {"problem": "not-found", "message": "inner", "code": 7, "symbol": "CBA.AX"}}
    exc = RPCError.from_json(json.loads(json.dumps(wire)))
    assert isinstance(exc, NotFound) and exc.message == "no such thing"
    assert exc.data == {"message": "inner", "code": 7, "symbol": "CBA.AX"}
    assert exc.to_json() == wire


def test_the_per_symbol_entry_is_made_by_the_error_itself():
    assert InvalidParams("bad").entry() == {"code": -32602, "message": "bad",
                                            "problem": "invalid-params"}
    assert ServiceUnavailable("gone").entry()["problem"] == "unavailable"


def test_one_exit_code_table_is_what_help_prints():
    from typer.testing import CliRunner

    from trading.cli.main import app

    text = CliRunner().invoke(app, ["--help"]).output
    for code, meaning in EXIT_MEANINGS.items():
        assert f"{int(code)} {meaning.split(':')[0]}" in text
    codes = {v for k, v in vars(Exit).items() if k.isupper()}
    assert set(EXIT_MEANINGS) == codes and len(codes) == 8


# -- one rule per parameter --------------------------------------------------------------
@pytest.mark.parametrize("method,params", [
    ("get_bars", {"symbol": "CBA", "period": {}}),
    ("get_bars", {"symbol": "CBA", "interval": ["1d"]}),
    ("get_market_data", {"symbol": "CBA", "source": {"x": 1}}),
    ("bulk_fetch", {"symbols": {"CBA": 1}}),
])
def test_bad_market_parameters_are_invalid_params_never_internal(method, params):
    from trading.handlers.market_data import MarketData

    svc = MarketData()
    d = svc.dispatcher()
    answer = json.loads(d.handle_line(json.dumps(
        {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()))
    svc.close()
    assert answer["error"]["code"] == -32602, answer


def test_symbol_lists_are_deduplicated_in_one_pass_in_order():
    from trading.handlers import params

    raw = [f"X{i % 5000:04d}" for i in range(40_000)] + ["cba", "CBA.AX", "bad sym!"]
    given, errors = params.symbols(raw, limit=50_000)
    assert len(given) == 5001 and next(iter(given)) == "X0000.AX"
    assert given["CBA.AX"] == ["cba", "CBA.AX"] and list(errors) == ["bad sym!"]
    with pytest.raises(InvalidParams, match="at most 1000"):
        params.symbols(raw)


def test_a_relative_csv_folder_works_for_predict_as_for_market(tmp_path, monkeypatch, asx_daily):
    from typer.testing import CliRunner

    from trading.cli.main import app

    data = tmp_path / "bars"
    data.mkdir()
    for name in ("CBA.AX.csv", "^AXJO.csv"):
        (data / name).write_text((asx_daily / name).read_text())
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    market = runner.invoke(app, ["market", "CBA", "--source", "csv:bars", "--json"])
    assert market.exit_code == 0, market.output
    predicted = runner.invoke(app, ["predict", "CBA", "--source", "csv:bars", "--json"])
    assert predicted.exit_code == 0, predicted.output
    out = json.loads(predicted.stdout)
    assert list(out["results"]) == ["CBA.AX"]
