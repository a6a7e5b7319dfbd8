"""JSON-RPC 2.0, one JSON text per line, over a Unix stream socket.

Framing lives here and bounds its input: :class:`LineBuffer` splits a byte stream into
``\\n``-terminated lines and raises :class:`LineTooLong` once a line passes the limit, so a
client can never make the service hold an unbounded buffer. :func:`decode` and :func:`encode`
are the one JSON path, both ways, on the standard ``json`` module. :class:`Dispatcher` turns
one line into at most one response line: single requests, notifications (no ``id``: no
answer) and batches as the specification says. Parameters are by name; a method that accepts
positional parameters says so with ``@rpc(positional=True)``.
"""

from __future__ import annotations

import json
import math
TYPE_CHECKING = False  # typing costs ~3 ms of every cold start; annotations are strings
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from typing import Any

from trading import log
from trading.errors import (InternalError, InvalidParams, InvalidRequest, MethodNotFound, ParseError,
                     RPCError)

logger = log.getLogger(__name__)

DEFAULT_LINE_LIMIT = 1 << 20  # 1 MiB
DEFAULT_MAX_BATCH = 32        # requests in one batch: each answer is held until the last one
DEFAULT_BATCH_REPLY_LIMIT = 4 << 20  # bytes of answers one batch may build (then the rest fail)
_NO_ID = object()  # marks a notification: the request had no "id" member


class LineTooLong(Exception):
    """A line grew past the limit before its newline arrived."""


class LineBuffer:
    """Accumulates bytes and yields complete lines (without the ``\\n``), bounded by ``limit``."""

    def __init__(self, limit: int = DEFAULT_LINE_LIMIT) -> None:
        self.limit = limit
        self._buf = bytearray()

    def feed(self, data: bytes) -> Iterable[bytes]:
        """The complete lines ``data`` ends (with what came before it), in order."""
        if data and not self._buf and data.find(b"\n") == len(data) - 1 \
                and len(data) <= self.limit:
            return (data[:-1],)  # the usual case: one whole request in one read
        return self._lines(data)

    def _lines(self, data: bytes) -> Iterator[bytes]:
        self._buf += data
        start = 0
        while True:
            end = self._buf.find(b"\n", start)
            if end < 0:
                break
            if end - start > self.limit:
                raise LineTooLong(end - start)
            yield bytes(self._buf[start:end])
            start = end + 1
        del self._buf[:start]
        if len(self._buf) > self.limit:
            raise LineTooLong(len(self._buf))

    @property
    def pending(self) -> int:
        """Bytes received that are not yet a whole line."""
        return len(self._buf)


# -- JSON ---------------------------------------------------------------------------------
def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON (RFC 8259 has no NaN or infinities)")


def _default(obj: Any) -> Any:
    # numpy scalars and arrays, dates: the types handlers commonly return.
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0:
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def _finite(obj: Any) -> Any:
    """Replace NaN and infinities (not JSON) with null, recursively."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


# Made once: json.loads and json.dumps with options build a new one on every call.
_DECODER = json.JSONDecoder(parse_constant=_not_json)
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False,
                            default=_default)


def decode(text: str) -> Any:
    """``json.loads(text)``, except that ``NaN`` and the infinities (not JSON) are refused.
    Raises ``ValueError`` (json's ``JSONDecodeError``, with its message)."""
    if text.startswith("\ufeff"):  # as json.loads says it
        raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
    return _DECODER.decode(text)


def encode(message: Any) -> bytes:
    """One JSON text as a UTF-8 line. NaN and infinities become null (JSON has neither)."""
    try:
        text = _ENCODER.encode(message)
    except ValueError:  # NaN or an infinity somewhere (or a circular value: raised again)
        text = _ENCODER.encode(_finite(json.loads(json.dumps(message, default=_default))))
    try:
        return text.encode("utf-8") + b"\n"
    except UnicodeEncodeError:  # a lone surrogate (from a "\ud800" escape): keep it escaped
        return json.dumps(json.loads(text), separators=(",", ":")).encode("ascii") + b"\n"


def error_response(exc: RPCError, id: Any = None) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "error": exc.to_json(), "id": id}


def rpc(func: Callable | None = None, *, positional: bool = False, name: str | None = None):
    """Mark a service method as callable over the wire (``@rpc`` or ``@rpc(positional=True)``)."""

    def mark(f: Callable) -> Callable:
        f.__rpc__ = {"positional": positional, "name": name or f.__name__}
        return f

    return mark(func) if func is not None else mark


_PARAM_WORDS = (("positional arguments", "parameters"), ("positional argument", "parameter"),
                ("keyword-only arguments", "parameters"), ("keyword-only argument", "parameter"),
                ("keyword argument", "parameter"), ("argument", "parameter"))


class Method:
    """One callable method, called with a request's params.

    Params are checked by the call itself: a ``TypeError`` raised by the call (not from inside
    the method) means they do not fit, and becomes :class:`InvalidParams` with Python's own
    message. ``inspect`` (several ms to import) is loaded only for ``rpc.discover``.
    """

    def __init__(self, name: str, func: Callable, positional: bool = False) -> None:
        self.name = name
        self.func = func
        self.positional = positional
        doc = (getattr(func, "__doc__", None) or "").strip()
        self.doc = doc.split("\n", 1)[0].strip()

    @property
    def signature(self):
        import inspect

        return inspect.signature(self.func)

    def describe(self) -> dict[str, Any]:
        params = []
        for p in self.signature.parameters.values():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            params.append({"name": p.name, "required": p.default is p.empty,
                           **({} if p.default is p.empty else {"default": _jsonable(p.default)})})
        return {"name": self.name, "params": params, "doc": self.doc}

    def call(self, params: Any) -> Any:
        """Call the method with the request's params (an object by name, or an array where
        the method takes positions)."""
        if params is None:
            args, kwargs = (), {}
        elif isinstance(params, dict):
            args, kwargs = (), params
        elif isinstance(params, list):
            if not self.positional:
                raise InvalidParams(f"{self.name} takes parameters by name, not by position",
                                    method=self.name)
            args, kwargs = params, {}
        else:
            raise InvalidParams("params must be an object (by name) or an array",
                                method=self.name)
        try:
            return self.func(*args, **kwargs)
        except TypeError as exc:
            if exc.__traceback__ is not None and exc.__traceback__.tb_next is None:
                # Raised by the call itself, before the method ran: the params do not fit.
                message = str(exc).replace(f"{getattr(self.func, '__qualname__', '')}()", "")
                for python, wire in _PARAM_WORDS:  # Python's words for JSON-RPC's
                    message = message.replace(python, wire)
                raise InvalidParams(f"{self.name}: {message.strip()}", method=self.name) from None
            raise


def _jsonable(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool, type(None), list, dict)) else repr(value)


class Dispatcher:
    """Maps method names to callables and turns request lines into response lines."""

    def __init__(self, methods: dict[str, Method] | None = None,
                 max_batch: int = DEFAULT_MAX_BATCH,
                 batch_reply_limit: int = DEFAULT_BATCH_REPLY_LIMIT) -> None:
        self.methods: dict[str, Method] = dict(methods or {})
        self.max_batch = max_batch
        self.batch_reply_limit = batch_reply_limit

    def add(self, name: str, func: Callable, positional: bool = False) -> None:
        self.methods[name] = Method(name, func, positional)

    def handle_line(self, line: bytes) -> bytes | None:
        """Answer one line; ``None`` when nothing is to be sent (notifications only)."""
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            return encode(error_response(ParseError(f"line is not valid UTF-8: {exc.reason}")))
        try:
            message = decode(text)  # surrounding whitespace, a trailing \r included, is fine
        except (ValueError, RecursionError) as exc:
            return encode(error_response(ParseError(f"parse error: {exc}")))
        if isinstance(message, list) and 0 < len(message) <= self.max_batch:
            return self._handle_batch(message)
        response = self.handle_message(message)
        if response is None:
            return None
        return self._encode(response)

    def _encode(self, response: Any) -> bytes:
        try:
            return encode(response)
        except (TypeError, ValueError, RecursionError):
            logger.exception("result is not JSON serializable")
            return encode(error_response(InternalError("result is not JSON serializable"),
                                         response.get("id")))

    def _handle_batch(self, batch: list) -> bytes | None:
        """A batch, answered one request at a time and encoded as it goes: once the answers
        pass ``batch_reply_limit`` bytes, the rest are not run and each gets an error saying
        so. A batch's answers are all held until the last one, so this bounds its memory."""
        pieces: list[bytes] = []
        size = 0
        for request in batch:
            if size > self.batch_reply_limit:
                answer = self._over_budget(request)
            else:
                answer = self.handle_request(request)
            if answer is None:
                continue
            piece = self._encode(answer)[:-1]
            size += len(piece)
            pieces.append(piece)
        return b"[" + b",".join(pieces) + b"]\n" if pieces else None

    def _over_budget(self, request: Any) -> dict[str, Any] | None:
        id_ = request.get("id", _NO_ID) if isinstance(request, dict) else None
        if id_ is _NO_ID:
            return None
        if not (id_ is None or isinstance(id_, (str, int, float)) and not isinstance(id_, bool)):
            id_ = None
        return error_response(InvalidRequest(
            f"not run: the batch's answers passed {self.batch_reply_limit} bytes; send the "
            "rest in another batch", problem="batch-too-large",
            limit_bytes=self.batch_reply_limit), id_)

    def handle_message(self, message: Any) -> Any:
        """Answer a decoded message: a request object, a batch, or anything else."""
        if isinstance(message, list):
            if not message:
                return error_response(InvalidRequest("empty batch"))
            if len(message) > self.max_batch:
                # Refused whole, before any of it runs: a batch's answers are all held in
                # memory until the last is done, so its size is what bounds that memory.
                return error_response(InvalidRequest(
                    f"a batch of {len(message)} requests; at most {self.max_batch}",
                    problem="batch-too-large", limit=self.max_batch))
            answers = [a for a in (self.handle_request(m) for m in message) if a is not None]
            return answers or None
        return self.handle_request(message)

    def handle_request(self, request: Any) -> dict[str, Any] | None:
        id_ = _NO_ID
        try:
            if not isinstance(request, dict):
                raise InvalidRequest("a request must be a JSON object")
            id_ = request.get("id", _NO_ID)
            if id_ is not _NO_ID and id_ is not None and (
                    isinstance(id_, bool) or not isinstance(id_, (str, int, float))):
                id_ = None
                raise InvalidRequest("id must be a string, a number or null")
            if request.get("jsonrpc") != "2.0":
                raise InvalidRequest('"jsonrpc" must be exactly "2.0"')
            name = request.get("method")
            if not isinstance(name, str):
                raise InvalidRequest('"method" must be a string')
            method = self.methods.get(name)
            if method is None:
                raise MethodNotFound(f"no method {name!r}", method=name)
            result = method.call(request.get("params"))
        except RPCError as exc:
            if id_ is _NO_ID and not isinstance(exc, (InvalidRequest, ParseError)):
                return None
            return error_response(exc, None if id_ is _NO_ID else id_)
        except RecursionError:
            exc = InvalidRequest("request nested too deeply")
            return error_response(exc, None if id_ is _NO_ID else id_)
        except Exception:  # one bad request never stops a service
            logger.exception("method %r failed", request.get("method"))
            if id_ is _NO_ID:
                return None
            return error_response(InternalError("internal error; the service logged the details"), id_)
        if id_ is _NO_ID:
            return None
        return {"jsonrpc": "2.0", "result": result, "id": id_}
