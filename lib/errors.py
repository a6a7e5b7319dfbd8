"""The project's exceptions.

Errors are data on the wire: an :class:`RPCError` carries a JSON-RPC code, a message and a
stable ``problem`` code, turns itself into the JSON-RPC error object, and the client turns that
object back into the same class. Foreign exceptions (sqlite3, OSError, yfinance) are translated
at the edge that meets them, chained with ``raise ... from exc``.

    TradingError                     base of everything raised on purpose
    ├── ConfigError                  raised when a configuration value is missing or malformed
    ├── ClientError                  raised by the client before any answer arrives
    │   ├── ServiceUnavailable       no socket, connection refused, or connection lost
    │   └── CallTimeout              no answer within the call's timeout
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
        └── Unavailable              -32005: a service this one depends on is not reachable
"""

from __future__ import annotations

from typing import Any

JSON = dict[str, Any]


class TradingError(Exception):
    """Base class of every error the project raises on purpose."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(TradingError):
    """A configuration value is missing or malformed; the message names the key and the file."""

    exit_code = 2


class ClientError(TradingError):
    """The client could not get an answer from a service."""


class ServiceUnavailable(ClientError):
    """No socket, connection refused, or the connection was lost before the answer."""

    exit_code = 3


class CallTimeout(ClientError):
    """No answer arrived within the call's timeout."""

    exit_code = 4


class RPCError(TradingError):
    """A JSON-RPC error object: ``code``, ``message`` and ``data: {"problem": ..., ...}``."""

    code = -32000
    problem = "error"

    def __init__(self, message: str, *, problem: str | None = None, code: int | None = None,
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
        exc = klass(message, problem=problem if isinstance(problem, str) else None, **data)
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
    exit_code = 2


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
    exit_code = 3


_CLASSES = [ParseError, InvalidRequest, MethodNotFound, InvalidParams, InvalidSymbol,
            InternalError, NotFound, UpstreamUnavailable, Busy, Forbidden, Unavailable]
_BY_CODE: dict[int, type[RPCError]] = {}
for _klass in _CLASSES:
    _BY_CODE.setdefault(_klass.code, _klass)
_BY_PROBLEM: dict[str, type[RPCError]] = {k.problem: k for k in _CLASSES}
