"""The project's exceptions.

Errors are data on the wire: an :class:`RPCError` carries a JSON-RPC code, a message and a
stable ``problem`` code, turns itself into the JSON-RPC error object, and the client turns that
object back into the same class. Foreign exceptions (sqlite3, OSError, yfinance) are translated
at the edge that meets them, chained with ``raise ... from exc``.

    TradingError                     base of everything raised on purpose
    ├── ConfigError                  raised when a configuration value is missing or malformed
    ├── ClientError                  raised by the client before any answer arrives
    │   ├── ServiceUnavailable       no socket, connection refused, or connection lost
    │   │   └── ServiceStopped       systemd holds the service stopped (or its socket failed),
    │   │                            so it is not run in-process unless asked (--in-process)
    │   └── CallTimeout              no answer within the call's timeout
    ├── ControlError                 raised by start/stop/restart before or while changing units
    │   ├── NoSystemd                no systemd manager answers here (or none holds the install)
    │   └── NotPermitted             the manager refused the change to this user (needs sudo)
    └── RPCError                     a JSON-RPC error object (local or from a remote service)
        ├── ParseError               -32700: a line that is not JSON (or not UTF-8)
        ├── InvalidRequest           -32600: JSON that is not a request; a line over the limit
        ├── MethodNotFound           -32601: no such method on this service
        ├── InvalidParams            -32602: missing, unknown or malformed parameters
        │   └── InvalidSymbol        -32602: a symbol that fails validation
        ├── InternalError            -32603: a bug in the service (logged with its traceback)
        ├── NotFound                 -32001: the thing asked for does not exist
        ├── UpstreamUnavailable      -32002: Yahoo (or another source) failed and nothing cached
        ├── Busy                     -32003: the service is at capacity or the store is locked
        ├── Forbidden                -32004: the peer's credentials are not allowed
        ├── Unavailable              -32005: a service this one depends on is not reachable
        ├── StoreUnavailable         -32006: the store cannot be read or written (disk full,
        │                            read-only, corrupt, cannot be opened); ``data.cause``
        │                            says which and ``data.hint`` how to recover
        ├── Cancelled                -32007: a job stopped because it was cancelled
        └── PredictorError           the configured predictor (docs/predictors.md) let us down
            ├── PredictorUnavailable -32010: it cannot be imported or built (the whole call)
            ├── PredictorFailed      -32011: it raised for one symbol (that symbol's entry)
            ├── InvalidPrediction    -32012: its answer breaks the contract (no or unknown
            │                                action, confidence not a number in [0, 1])
            └── PredictorTimeout     -32013: it did not answer within ``predictor_timeout``
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs ~3 ms of every cold start; annotations are strings
if TYPE_CHECKING:
    from typing import Any

JSON = dict[str, "Any"]


class Exit:
    """The exit codes of every ``trading`` command: the one table (``trading --help`` and
    docs/operations.md print it from :data:`EXIT_MEANINGS`). Plain ints, not an ``IntEnum``:
    ``enum`` costs about 4 ms to import, and every handler's cold start imports this module."""

    OK = 0
    FAILURE = 1
    USAGE = 2
    UNAVAILABLE = 3
    TIMEOUT = 4
    NO_SYSTEMD = 5
    NOT_PERMITTED = 6
    INTERRUPTED = 130


EXIT_MEANINGS: dict[int, str] = {
    Exit.OK: "ok",
    Exit.FAILURE: "failure: a service error; every symbol failed",
    Exit.USAGE: "usage or bad input: a bad option, an invalid symbol, a bad configuration value",
    Exit.UNAVAILABLE: "service unavailable: no answer from its socket",
    Exit.TIMEOUT: "timeout",
    Exit.NO_SYSTEMD: "no systemd: start, stop and restart need a running systemd manager",
    Exit.NOT_PERMITTED: "not permitted: the manager refused (the line shows the sudo command)",
    Exit.INTERRUPTED: "interrupted (Ctrl-C)",
}


class TradingError(Exception):
    """Base class of every error the project raises on purpose."""

    exit_code = Exit.FAILURE

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def entry(self) -> JSON:
        """This error as one entry of a per-symbol ``errors`` map: ``{code, message, problem}``
        (what ``bulk_fetch``, ``analyze_bulk`` and ``generate_predictions`` return)."""
        return {"code": Unavailable.code, "message": self.message, "problem": Unavailable.problem}


class ConfigError(TradingError):
    """A configuration value is missing or malformed; the message names the key and the file."""

    exit_code = Exit.USAGE


class ClientError(TradingError):
    """The client could not get an answer from a service."""


class ServiceUnavailable(ClientError):
    """No socket, connection refused, or the connection was lost before the answer."""

    exit_code = Exit.UNAVAILABLE


class ServiceStopped(ServiceUnavailable):
    """systemd holds the service stopped (``trading stop``) or its socket has failed: the CLI
    says so instead of quietly running the handler in-process."""


class CallTimeout(ClientError):
    """No answer arrived within the call's timeout."""

    exit_code = Exit.TIMEOUT


class ControlError(TradingError):
    """``trading start``, ``stop`` or ``restart`` could not change the units."""


class NoSystemd(ControlError):
    """No systemd manager answers here, or the one holding the install is not running."""

    exit_code = Exit.NO_SYSTEMD


class NotPermitted(ControlError):
    """The manager refused the change to this user; the message names the sudo command."""

    exit_code = Exit.NOT_PERMITTED


class RPCError(TradingError):
    """A JSON-RPC error object: ``code``, ``message`` and ``data: {"problem": ..., ...}``."""

    code = -32000
    problem = "error"

    def __init__(self, message: str, /, *, problem: str | None = None, code: int | None = None,
                 **data: Any) -> None:
        super().__init__(message)
        if problem is not None:
            self.problem = problem
        if code is not None:
            self.code = code
        self.data = data

    def to_json(self) -> JSON:
        return {"code": self.code, "message": self.message,
                "data": {"problem": self.problem, **self.data}}

    def entry(self) -> JSON:
        return {"code": self.code, "message": self.message, "problem": self.problem}

    @classmethod
    def from_json(cls, error: Any) -> RPCError:
        """Rebuild the most specific class from an error object received over the wire."""
        if not isinstance(error, dict):
            return InternalError(f"malformed error object: {error!r}")
        code = error.get("code")
        message = str(error.get("message", "unknown error"))
        data = error.get("data")
        data = dict(data) if isinstance(data, dict) else {}
        problem = data.pop("problem", None)
        klass = _BY_PROBLEM.get(problem) or _BY_CODE.get(code) or RPCError
        exc = klass(message)
        exc.data = data  # as received: its keys may be anything, "message" and "code" included
        if isinstance(problem, str):
            exc.problem = problem
        if isinstance(code, int):
            exc.code = code
        return exc


class ParseError(RPCError):
    code, problem = -32700, "parse-error"


class InvalidRequest(RPCError):
    code, problem = -32600, "invalid-request"


class MethodNotFound(RPCError):
    code, problem = -32601, "method-not-found"


class InvalidParams(RPCError):
    code, problem = -32602, "invalid-params"
    exit_code = Exit.USAGE


class InvalidSymbol(InvalidParams):
    problem = "invalid-symbol"


class InternalError(RPCError):
    code, problem = -32603, "internal-error"


class NotFound(RPCError):
    code, problem = -32001, "not-found"


class UpstreamUnavailable(RPCError):
    code, problem = -32002, "upstream-unavailable"


class Busy(RPCError):
    code, problem = -32003, "busy"


class Forbidden(RPCError):
    code, problem = -32004, "forbidden"


class Unavailable(RPCError):
    code, problem = -32005, "unavailable"
    exit_code = Exit.UNAVAILABLE


class StoreUnavailable(RPCError):
    """The shared store failed: ``cause`` is ``disk-full``, ``read-only``, ``corrupt`` or
    ``unavailable`` (cannot be opened, I/O error); ``hint`` says what an administrator does."""

    code, problem = -32006, "store-unavailable"


class Cancelled(RPCError):
    code, problem = -32007, "cancelled"


class PredictorError(RPCError):
    code, problem = -32010, "predictor-error"


class PredictorUnavailable(PredictorError):
    code, problem = -32010, "predictor-unavailable"


class PredictorFailed(PredictorError):
    code, problem = -32011, "predictor-failed"


class InvalidPrediction(PredictorError):
    code, problem = -32012, "invalid-prediction"


class PredictorTimeout(PredictorError):
    code, problem = -32013, "predictor-timeout"


_CLASSES = [ParseError, InvalidRequest, MethodNotFound, InvalidParams, InvalidSymbol,
            InternalError, NotFound, UpstreamUnavailable, Busy, Forbidden, Unavailable,
            StoreUnavailable, Cancelled, PredictorUnavailable, PredictorFailed,
            InvalidPrediction, PredictorTimeout, PredictorError]
_BY_CODE: dict[int, type[RPCError]] = {}
for _klass in _CLASSES:
    _BY_CODE.setdefault(_klass.code, _klass)
_BY_PROBLEM: dict[str, type[RPCError]] = {k.problem: k for k in _CLASSES}
