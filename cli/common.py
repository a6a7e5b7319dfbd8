"""What every command shares: the client, the ``--source`` option, JSON and table output,
one-line failures.

Exit codes are :class:`trading.errors.Exit` (the one table; ``trading --help`` prints it).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from trading import config as _config
from trading.errors import Exit, ServiceStopped, ServiceUnavailable

if TYPE_CHECKING:
    from trading.runtime.client import Client

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = Exit.OK, Exit.FAILURE, Exit.USAGE
EXIT_UNAVAILABLE, EXIT_TIMEOUT, EXIT_INTERRUPTED = Exit.UNAVAILABLE, Exit.TIMEOUT, Exit.INTERRUPTED
EXIT_NO_SYSTEMD, EXIT_NOT_PERMITTED = Exit.NO_SYSTEMD, Exit.NOT_PERMITTED

def json_option(instead_of: str = "a table") -> Any:
    """The ``--json`` option; ``instead_of`` says what it replaces when that is no table."""
    return typer.Option(False, "--json", help=f"Print JSON for scripts instead of {instead_of}.")


JsonOption = json_option()


def _source_spec(spec: str | None) -> str | None:
    """A folder source (``csv:DIR``, ``jsonl:DIR``) with DIR made absolute: the service runs
    elsewhere (systemd, another working directory), so a relative path means nothing there.
    A bare word that names no source (``-s CBA``, meant as a symbol) is a usage error that
    says what ``-s`` is."""
    for prefix in ("csv:", "jsonl:"):
        if spec and spec.startswith(prefix) and len(spec) > len(prefix):
            return prefix + str(Path(spec[len(prefix):]).expanduser().resolve())
    if spec is not None and ":" not in spec and spec not in SOURCES:
        raise fail(f"unknown source {spec!r}: expected {', '.join(SOURCES)} or csv:DIR (-s "
                   "is --source in every command; symbols are arguments, or replay's "
                   "--symbol)", EXIT_USAGE)
    return spec


SOURCES = ("yahoo", "sample")  # the sources named by a word; folders are csv:DIR


def SourceOption(help: str = "yahoo, sample or csv:DIR (default: the configured source).") -> Any:
    """The one ``--source``/``-s`` option of every data command (``-s`` means this and only
    this everywhere); a folder in it may be given relative to here and reaches the service
    absolute."""
    return typer.Option(None, "--source", "-s", help=help, callback=_source_spec)


def SymbolsFromOption() -> Any:
    """The one ``--symbols-from`` option of predict, replay, backtest and train: a universe
    (trading.market.universe) rather than symbols one by one."""
    return typer.Option(None, "--symbols-from", "-u", metavar="WATCHLIST|FILE",
                        help="Also the symbols of a [watchlists] entry of the configuration, "
                        "or of a file of codes (one per line or comma-separated, # comments).")


def universe(symbols: list[str] | None, spec: str | None) -> list[str] | None:
    """The command line's symbols and those of ``--symbols-from``, once each (None: neither,
    the configured symbols apply). A bad watch list or file is one line and exit 2."""
    from trading.errors import InvalidParams
    from trading.handlers.params import MAX_SYMBOLS
    from trading.market.universe import combine

    try:
        return combine(symbols, spec, _config.get(), MAX_SYMBOLS)
    except InvalidParams as exc:
        raise fail(exc.message, EXIT_USAGE) from None


def note(message: str) -> None:
    """One line for the person at the terminal, on stderr so --json output stays clean."""
    print(f"trading: {message}", file=sys.stderr)


def fail(message: str, code: int = EXIT_FAILURE) -> typer.Exit:
    note(message)
    return typer.Exit(code)


class _StderrHandler(logging.Handler):
    """Log records as ``trading: name: message`` on whatever ``sys.stderr`` is at the time
    (typer's test runner swaps it per invocation). Below DEBUG, yfinance's and pandas'
    records are left out here, not silenced at their loggers: trading.market.sources reads
    yfinance's error records to tell "Yahoo unreachable" from "no data"."""

    quiet = ("yfinance", "py.warnings")

    def filter(self, record: logging.LogRecord) -> bool:
        if self.level > logging.DEBUG and record.name.split(".", 1)[0] in self.quiet:
            return False
        return super().filter(record)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = f"trading: {record.name}: {record.getMessage()}"
            exc = record.exc_info[1] if record.exc_info else None
            if exc is not None:
                # A handler's bug, in-process: the cause in one line (the whole traceback
                # with TRADING_LOG_LEVEL=DEBUG), since "internal error" alone says nothing.
                line += f" ({type(exc).__name__}: {exc})"
                if self.level <= logging.DEBUG:
                    line += "\n" + "".join(traceback.format_exception(*record.exc_info))
            print(line, file=sys.stderr)
        except Exception:  # a log line must never break the command
            self.handleError(record)


def setup_logging() -> None:
    """Logging for a command, set up once at the entry point.

    Handlers that run in-process log here, not to the journal. The command already reports
    each failure as one line, so by default only errors (a bug's traceback) reach stderr;
    ``TRADING_LOG_LEVEL=WARNING`` (or INFO, DEBUG) shows more. yfinance reports one failed
    download several times over, and pandas warns about yfinance's calls: both stay quiet
    unless ``TRADING_LOG_LEVEL=DEBUG`` asks for everything. (A warnings filter cannot do it:
    yfinance puts its own at the front when it is imported, so warnings go through logging.)
    """
    level = os.environ.get("TRADING_LOG_LEVEL", "").upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        level = "ERROR"
    root = logging.getLogger()
    handler = next((h for h in root.handlers if isinstance(h, _StderrHandler)), None)
    if handler is None:
        handler = _StderrHandler()
        root.addHandler(handler)
    handler.setLevel(level)
    if logging.getLevelName(level) < root.getEffectiveLevel():
        root.setLevel(level)
    logging.captureWarnings(True)  # warnings become records of the "py.warnings" logger


def installed_manager(as_json: bool, no_systemd: str, empty: dict[str, Any]):
    """The systemd manager holding the install, for ``status`` and ``schedule``; else say why
    not (``no_systemd`` ends the message when no manager runs: exit 0, the product still
    works in-process) and stop (exit 1 when a manager runs but nothing is installed).
    ``empty`` is the rest of the ``--json`` answer (its empty lists)."""
    from trading.ops import systemd

    manager, installed = systemd.detect()
    if manager is None:
        message = ("systemd is not running here" + (" (the units are installed but their "
                   "manager is not running)" if installed else "") + ": " + no_systemd)
        scope, code = None, EXIT_OK
    elif not installed:
        message = (f"trading-services is not installed in the {manager.scope} manager; "
                   "run ./install.sh (or ./install.sh --user)")
        scope, code = manager.scope, EXIT_FAILURE
    else:
        return manager
    if as_json:
        print_json({"systemd": scope, "installed": installed, "message": message, **empty})
    else:
        print(message)
    raise typer.Exit(code)


def check_predictor(cfg: Any) -> dict[str, Any]:
    """Have the configured predictor imported where it runs, and say how it went: a predictor
    that cannot be imported is one line on stderr, naming the predictor, the file and the
    exception (``trading status``, ``trading config show``).

    A plugged predictor is the trader's code: it is imported by the prediction service, in
    its sandbox (``check_predictor``), never in this process while a service socket is
    installed; only without one, where every command runs the handlers here, is it imported
    here. The built-in rules are ours and are described here without a service start."""
    from trading.signals import predictors

    if cfg["predictor"] == predictors.DEFAULT:
        info = predictors.check(cfg)
    else:
        info = _check_in_service(cfg)
    if not info["ok"]:
        note(info["error"])
    return info


def _check_in_service(cfg: Any) -> dict[str, Any]:
    from trading import handlers
    from trading.errors import ServiceStopped, TradingError

    def refuse_stopped(service: str) -> None:
        from trading.ops.systemd import stopped_reason

        reason = stopped_reason(service)
        if reason is not None:
            raise ServiceStopped(reason)

    rpc = handlers.client(cfg, on_fallback=refuse_stopped)
    try:
        return rpc.call("prediction", "check_predictor")
    except TradingError as exc:
        return {"name": cfg["predictor"], "ok": False,
                "error": f"cannot check predictor {cfg['predictor']}: {exc}"}
    finally:
        rpc.close()


def predictor_line(info: dict[str, Any]) -> str:
    """``predictor NAME (form, FILE, version V, sha256 ABC...): imports in N ms``."""
    parts = [info["form"]] + [str(info[k]) for k in ("file",) if info.get(k)]
    if info.get("version"):
        parts.append(f"version {info['version']}")
    if info.get("sha256"):
        parts.append(f"sha256 {info['sha256'][:12]}")
    return (f"predictor {info['name']} ({', '.join(parts)}): imports in "
            f"{info['import_ms']:.1f} ms")


# `trading --in-process CMD`: run every handler inside the command, whatever systemd says.
IN_PROCESS = {"asked": False}


def client(**overrides: Any) -> Client:
    """The process's client; says once (for the first service) when it runs handlers
    in-process: one line per command, however many services it reaches.

    A service that systemd holds stopped (``trading stop``) or whose socket failed is not run
    here quietly: the call fails with :class:`ServiceStopped`, unless ``--in-process`` asked."""
    told: list[str] = []
    if IN_PROCESS["asked"]:
        overrides.setdefault("in_process", "always")

    def once(service: str) -> None:
        from trading.ops.systemd import stopped_reason

        reason = stopped_reason(service)
        if reason is not None:
            raise ServiceStopped(reason)
        if not told:
            told.append(service)
            note(f"{service}: no service socket installed; running the handler in-process "
                 "(and any other without a socket)")

    from trading import handlers

    return handlers.client(_config.get(), on_fallback=once, **overrides)


def reader() -> Client:
    """A client whose services run here on the store opened read-only (SQLite ``mode=ro``):
    what reading commands fall back to when the services cannot be reached."""
    from trading import handlers
    from trading.runtime.client import Client, LocalTransport
    from trading.runtime.store import Store

    cfg = _config.get()
    return Client(cfg, in_process="always", local=LocalTransport(
        handlers.load, store_factory=lambda: Store(cfg.db_file, readonly=True)))


class Reading:
    """The client of a command that only reads stored predictions (``history``, ``report``,
    ``explain``): the service when it answers; when it cannot be reached (``trading stop``,
    a failed socket) the store itself, read-only, in this process, said once on stderr.
    The store is there whether or not the services run."""

    def __init__(self) -> None:
        self.services: Client = client()  # for a call that must reach them (it writes)
        self._client: Client = self.services
        self.direct = False

    def call(self, service: str, method: str, params: Any = None, **kw: Any) -> Any:
        if not self.direct:
            try:
                return self._client.call(service, method, params, **kw)
            except ServiceUnavailable as exc:
                cfg = _config.get()
                if cfg["in_process"] == "never" or not os.path.exists(cfg.db_file):
                    raise  # told never to run here; or there is no store to read
                self.direct = True
                note(f"{str(exc).split(': ', 1)[0]}; reading the store directly (read-only)")
                self._client = reader()
        return self._client.call(service, method, params, **kw)


def predictor_override(cfg: Any, option: str | None) -> str | None:
    """The predictor one command asks for: ``--predictor``, else a ``TRADING_PREDICTOR`` set
    for this command (the services run with their own environment, so it is passed on the
    call, not left to theirs); None: the configured one."""
    if option:
        return option
    if cfg.source_of("predictor").startswith("env "):
        return cfg["predictor"]
    return None


@contextlib.contextmanager
def interrupts_win() -> Iterator[None]:
    """Ctrl-C inside a C extension (matplotlib's Agg drawing a text box) can come out as that
    extension's own error, e.g. ``ValueError: Invalid bounding box``: an error raised after
    Ctrl-C was pressed is the interrupt (exit 130), not a bug's traceback."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pressed: list[bool] = []

    def on_sigint(signum: int, frame: Any) -> None:
        pressed.append(True)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    except Exception:
        if pressed:
            raise KeyboardInterrupt from None
        raise
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def working(message: str) -> Iterator[None]:
    """A spinner on stderr while a step runs (for steps that take a second or more).

    Drawn only when stderr is a terminal, so pipes, cron mail and ``--json`` stay clean; it
    vanishes when the step ends."""
    if not sys.stderr.isatty():
        yield
        return
    from rich.console import Console

    with Console(stderr=True).status(message):
        yield


def print_json(data: Any) -> None:
    from trading.runtime.protocol import encode

    sys.stdout.write(encode(data).decode())


def table(title: str | None, columns: list[str], rows: list[list[Any]], *,
          compact: bool = False) -> None:
    """A plain text table on stdout: the title, a header, a rule, the rows; columns as wide
    as their widest cell. ``compact`` puts one space between columns instead of two, for
    wide tables that should still fit 80 columns.

    Plain on purpose: rich's table costs ~40 ms of import on every command that prints one
    (the timers run one every 30 minutes), and it reads ``[...]`` in a cell as markup, which
    a headline or a symbol from outside must never be."""
    cells = [[("" if v is None else str(v)).replace("\n", " ") for v in r] for r in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells if i < len(r)])
              for i, c in enumerate(columns)]
    gap = " " if compact else "  "

    def line(values: list[str]) -> str:
        return gap.join(v.ljust(w) for v, w in zip(values, widths)).rstrip()

    out = [title] if title else []
    out += [line(columns), gap.join("-" * w for w in widths)]
    out += [line(r) for r in cells]
    sys.stdout.write("\n".join(out) + "\n")


def parse_kv(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` arguments; a value that parses as JSON is taken as JSON."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected key=value, got {pair!r}")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out
