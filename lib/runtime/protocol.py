"""JSON-RPC 2.0, one JSON text per line, over a Unix stream socket.

Framing lives here and bounds its input: :class:`LineBuffer` splits a byte stream into
``\\n``-terminated lines and raises :class:`LineTooLong` once a line passes the limit, so a
client can never make the service hold an unbounded buffer. :class:`Dispatcher` turns one line
into at most one response line: single requests, notifications (no ``id``: no answer) and
batches as the specification says. Parameters are by name; a method that accepts positional
parameters says so with ``@rpc(positional=True)``.

The module is long because framing, the JSON path (json's C core, the json package only on
error paths) and the dispatcher are one wire contract: the bytes of every answer depend on
all three, and each is read with the others.
"""

from __future__ import annotations

import _json  # json's own C accelerator; see "JSON without the json package" below
import math
TYPE_CHECKING = False  # typing costs ~3 ms of every cold start; annotations are strings
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any

from trading import log
from trading.errors import (InternalError, InvalidParams, InvalidRequest, MethodNotFound, ParseError,
                     RPCError)

logger = log.getLogger(__name__)

DEFAULT_LINE_LIMIT = 1 << 20  # 1 MiB
DEFAULT_MAX_BATCH = 32        # requests in one batch: each answer is held until the last one
DEFAULT_BATCH_REPLY_LIMIT = 4 << 20  # bytes of answers one batch may build (then the rest fail)
_NO_ID = object()  # marks a notification: the request had no "id" member
_PLAIN_IDS = frozenset((str, int, float, type(None)))  # valid ids, checked by type alone


class LineTooLong(Exception):
    """A line grew past the limit before its newline arrived."""


class LineBuffer:
    """Accumulates bytes and yields complete lines (without the ``\\n``), bounded by ``limit``."""

    def __init__(self, limit: int = DEFAULT_LINE_LIMIT) -> None:
        self.limit = limit
        self._buf = bytearray()

    def one_line(self, data: bytes) -> bytes | None:
        """The common case, one whole request per read and nothing pending: ``data`` without
        its newline, with no copying through the buffer and no generator. ``None`` when
        ``data`` is anything else; nothing is consumed then: give it to :meth:`feed`."""
        if self._buf or not data.endswith(b"\n") or data.count(b"\n") != 1:
            return None
        if len(data) - 1 > self.limit:
            raise LineTooLong(len(data) - 1)
        return data[:-1]

    def feed(self, data: bytes) -> Iterator[bytes]:
        line = self.one_line(data)
        if line is not None:
            yield line
            return
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


def _finite(obj: Any) -> Any:
    """Replace NaN and infinities (not JSON) with null, recursively."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _default(obj: Any) -> Any:
    # numpy scalars and arrays, dates: the types handlers commonly return.
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0:
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


# -- JSON without the json package ------------------------------------------------------
# The common case, a request in and an answer out, goes straight to json's C accelerator
# (``_json``, what ``json.loads`` and ``json.dumps`` use underneath). Importing ``json``
# itself costs every cold start about 7 ms: its decoder and encoder compile regular
# expressions, and ``re`` imports ``enum``. Anything off the common case (an error to report,
# NaN to replace, an encoder fallback) imports ``json`` then, so messages stay json's own.
class _Scanning:
    """What ``json.JSONDecoder()`` gives its C scanner: json's defaults."""

    strict = True
    object_hook = object_pairs_hook = None
    parse_float, parse_int = float, int
    parse_constant = {"-Infinity": float("-inf"), "Infinity": float("inf"),
                      "NaN": float("nan")}.__getitem__


_SCAN = _json.make_scanner(_Scanning())
_JSON_SPACE = " \t\n\r"  # json's whitespace; str.strip() alone would take more
# The C encoder json.dumps builds on every call with these options, built once (about 1 us
# per answer): compact, UTF-8 rather than \u escapes, no NaN. It skips the circular-reference
# check (markers=None): a circular result recurses until RecursionError, and encode then asks
# json's checked encoder, which says which it was.
_C_ENCODER = _json.make_encoder(None, _default, _json.encode_basestring, None,
                                ":", ",", False, False, False)


def _checked_encode(message: Any) -> str:
    import json

    return json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False,
                            default=_default).encode(message)


def decode(text: str) -> Any:
    """``json.loads(text)``, with the common case (a value at offset 0 and nothing after it
    but whitespace) read by the scanner alone; anything else goes through ``json.loads``, so
    errors and their messages are json's own."""
    try:
        value, end = _SCAN(text, 0)
    except (StopIteration, ValueError):  # leading whitespace, a BOM, or not JSON at all
        return _loads(text)
    if end != len(text) and text[end:].strip(_JSON_SPACE):
        return _loads(text)  # extra data: json.loads raises, with its message
    return value


def _loads(text: str) -> Any:
    import json

    return json.loads(text)


def encode(message: Any) -> bytes:
    """One JSON text as a UTF-8 line. NaN and infinities become null (JSON has neither)."""
    try:
        try:
            text = encode_text(message)
        except RecursionError:  # nested too deeply, or circular: the checked encoder says which
            text = _checked_encode(message)
    except ValueError:
        import json

        text = json.dumps(_finite(json.loads(json.dumps(message, default=_default))),
                          separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    try:
        return text.encode("utf-8") + b"\n"
    except UnicodeEncodeError:  # a lone surrogate (from a "\ud800" escape): keep it escaped
        import json

        return json.dumps(json.loads(text), separators=(",", ":")).encode("ascii") + b"\n"


class Encoded(dict):
    """A result that brings its own JSON text (``json``, or None), which the dispatcher sends
    instead of encoding the dict again: the fast path of a method called often, such as
    ``health_check``, which monitors poll. Python callers get an ordinary dict. Made like a
    dict, then ``json`` set: exactly these items as JSON (tests compare the two for every
    service), or None to have them encoded as usual; never changed after (:func:`encoded`).
    A memoized part of an answer may be one too, and its text is then reused."""

    json: str | None = None


def encoded(items: dict[str, Any]) -> Encoded:
    """``items`` as an :class:`Encoded` with its JSON (None where it is not JSON as it
    stands: NaN, say). For a memo: made when the memo is, never changed after."""
    out = Encoded(items)
    try:
        out.json = encode_text(out)
    except (TypeError, ValueError, RecursionError):
        out.json = None
    return out


def encode_text(value: Any) -> str:
    """``value`` as compact JSON text (json's C encoder; ValueError on NaN and infinities)."""
    return "".join(_C_ENCODER(value, 0))


def _answer_with(result_json: str, id: Any) -> bytes:
    id_text = str(id) if type(id) is int else encode_text(id)
    return f'{{"jsonrpc":"2.0","result":{result_json},"id":{id_text}}}\n'.encode("utf-8")


def error_response(exc: RPCError, id: Any = None) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "error": exc.to_json(), "id": id}


def rpc(func: Callable | None = None, *, positional: bool = False, name: str | None = None):
    """Mark a service method as callable over the wire (``@rpc`` or ``@rpc(positional=True)``)."""

    def mark(f: Callable) -> Callable:
        f.__rpc__ = {"positional": positional, "name": name or f.__name__}
        return f

    return mark(func) if func is not None else mark


class Method:
    """One callable method; the facts the fast path needs are read once, at registration.

    ``inspect`` (several ms to import, paid on every cold start) is loaded only off the fast
    path: positional params, a binding error, or ``rpc.discover``.
    """

    def __init__(self, name: str, func: Callable, positional: bool = False) -> None:
        self.name = name
        self.func = func
        self.positional = positional
        doc = (getattr(func, "__doc__", None) or "").strip()
        self.doc = doc.split("\n", 1)[0].strip()
        self._signature = None
        f = getattr(func, "__func__", func)
        code = getattr(f, "__code__", None)
        # Plain named parameters only (no *args, **kwargs or positional-only): checked as sets.
        self._simple = bool(code) and not code.co_flags & 0x0C and code.co_posonlyargcount == 0
        if self._simple:
            skip = 1 if hasattr(func, "__self__") else 0
            positional_names = code.co_varnames[skip:code.co_argcount]
            kwonly = code.co_varnames[code.co_argcount:code.co_argcount + code.co_kwonlyargcount]
            n_defaults = len(f.__defaults__ or ())
            with_default = set(positional_names[len(positional_names) - n_defaults:]
                               if n_defaults else ())
            with_default |= set(f.__kwdefaults__ or ())
            self._names = frozenset(positional_names) | frozenset(kwonly)
            self._required = self._names - with_default
        # Called without params and needing none: nothing to check at all.
        self._bare = self._simple and not self._required

    @property
    def signature(self):
        if self._signature is None:
            import inspect

            self._signature = inspect.signature(self.func)
        return self._signature

    def describe(self) -> dict[str, Any]:
        params = []
        for p in self.signature.parameters.values():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            params.append({"name": p.name, "required": p.default is p.empty,
                           **({} if p.default is p.empty else {"default": _jsonable(p.default)})})
        return {"name": self.name, "params": params, "doc": self.doc}

    def call(self, params: Any) -> Any:
        """Call the method with the request's params, checked against its signature."""
        if params is None and self._bare:
            return self.func()
        if self._simple and (params is None or type(params) is dict):
            # Fast path: named params only; checked with set operations, no Signature.bind.
            keys = params.keys() if params else frozenset()
            if keys <= self._names and self._required <= keys:
                return self.func(**params) if params else self.func()
        bound = self.bind(params)
        return self.func(*bound.args, **bound.kwargs)

    def bind(self, params: Any):
        """``inspect.BoundArguments`` for the params, or InvalidParams saying what is wrong."""
        if params is None:
            params = {}
        try:
            if isinstance(params, dict):
                return self.signature.bind(**params)
            if isinstance(params, list):
                if not self.positional:
                    raise InvalidParams(f"{self.name} takes parameters by name, not by position",
                                        method=self.name)
                return self.signature.bind(*params)
        except TypeError as exc:
            raise InvalidParams(f"{self.name}: {exc}", method=self.name) from exc
        raise InvalidParams("params must be an object (by name) or an array", method=self.name)


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
        if type(message) is dict:  # the common case first: one request
            response = self.handle_request(message)
        elif isinstance(message, list) and 0 < len(message) <= self.max_batch:
            return self._handle_batch(message)
        else:
            response = self.handle_message(message)
        if response is None:
            return None
        return self._encode(response)

    def _encode(self, response: Any) -> bytes:
        result = response.get("result")
        if type(result) is Encoded and result.json is not None:
            try:
                return _answer_with(result.json, response["id"])
            except (TypeError, ValueError, RecursionError):
                pass  # an id the fast path cannot write (NaN, say): the general way below
        try:
            return encode(response)
        except (TypeError, ValueError):
            logger.exception("result is not JSON serializable")
            return encode(error_response(InternalError("result is not JSON serializable")))

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
            if type(id_) not in _PLAIN_IDS and id_ is not _NO_ID and not (
                    isinstance(id_, (str, int, float)) and not isinstance(id_, bool)):
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
