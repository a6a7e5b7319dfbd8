"""What the dashboard checks before the app sees a request, and the login's pieces.

:class:`Guard` is an ASGI middleware around the whole app. In order, it refuses:

1. a Host name that a page on another site could have rebound to this address (421): only
   loopback names, IP literals (a literal cannot be rebound), ``web.hosts`` and, with a
   token, this machine's own name are served, over TCP and Unix sockets alike (an SSH tunnel
   to a Unix socket carries a browser's Host as it is); ``web.hosts = ["*"]`` turns it off;
2. a body declared larger than :data:`FORM_LIMIT` (413, before a byte of it is read; a body
   without a length is cut off at the same size by :func:`read_form`);
3. with ``web.token``, a request without it (an ``Authorization: Bearer`` header or the
   session cookie that ``/login`` sets): a redirect to ``/login`` for a page, 401 for JSON.

and adds the security headers to every answer. The login itself: :class:`Sessions` (the
cookie is a signed value, never the token), :class:`Budget` (guesses per client and in all,
checked before the body is read) and :func:`safe_next` (no open redirect).
"""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Callable
from urllib.parse import quote

from trading import clock as _clock

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")
HEADERS = [(b"content-security-policy", CSP.encode()),
           (b"x-content-type-options", b"nosniff"),
           (b"referrer-policy", b"no-referrer"),
           (b"x-frame-options", b"DENY"),
           (b"cross-origin-opener-policy", b"same-origin")]
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
COOKIE = "trading_web_session"
SESSION_S = 7 * 24 * 3600  # a login lasts a week, then the token is asked for again
# The largest form the dashboard takes (login, actions): a few short fields. A body larger
# than this is refused before it is read, or cut off when it comes without a length.
FORM_LIMIT = 16 * 1024
# /login: guesses per client (burst, then per second) and in all. At most a handful a second
# reach the comparison however many connections or addresses a guesser uses (without this,
# about 700 a second did); a user who mistypes has five tries at once.
LOGIN_PER_CLIENT = (5, 1.0)
LOGIN_OVERALL = (20, 5.0)


# -- requests ---------------------------------------------------------------------------------
def header(scope, name: bytes) -> str:
    for k, v in scope.get("headers") or ():
        if k == name:
            return v.decode("latin-1")
    return ""


def cookie(scope, name: str) -> str:
    for part in header(scope, b"cookie").split(";"):
        k, _, v = part.strip().partition("=")
        if k == name:
            return v
    return ""


def same(given: str, token: str) -> bool:
    """``given`` is ``token``, compared in constant time (never true for an empty token)."""
    return bool(token) and hmac.compare_digest(given.encode(), token.encode())


def bearer(scope) -> str:
    auth = header(scope, b"authorization")
    return auth[7:].strip() if auth[:7].lower() == "bearer " else ""


def client_key(scope) -> str:
    """Whom a login budget is counted against: the peer's address (a Unix socket's peers,
    behind a proxy or a tunnel, share one)."""
    client = scope.get("client")
    return client[0] if client else "unix"


def is_https(scope) -> bool:
    """Served over TLS, or behind a proxy that says so. Trusting ``X-Forwarded-Proto`` from
    anyone is safe here: it only ever makes the cookie stricter (``Secure``)."""
    proto = header(scope, b"x-forwarded-proto").split(",")[0].strip().lower()
    return scope.get("scheme") == "https" or proto == "https"


def safe_next(value: str) -> str:
    """Where to go after the login: a path on this site, else ``/``. Browsers read ``\\`` as
    ``/`` and drop tabs and newlines, so ``/\\evil.example`` or ``/<TAB>/evil.example`` would
    be ``//evil.example``, another site: only printable ASCII without a backslash, starting
    with exactly one ``/``, is taken."""
    ok = (value.startswith("/") and not value.startswith("//")
          and all(" " < c <= "~" and c != "\\" for c in value))
    return value if ok else "/"


# -- the login ------------------------------------------------------------------------------
class Sessions:
    """The login cookie's value: ``EXPIRES.NONCE.MAC``, signed with a key derived from the
    token. The cookie is never the token itself (a cookie that leaks, from a browser profile
    or a proxy's log, expires and is no password), and no session table is kept: the process
    exits when idle, which would log everyone out, while a signed value survives restarts.
    Changing ``web.token`` ends every session."""

    def __init__(self, token: str, *, lifetime: float = SESSION_S,
                 clock: Callable[[], float] = _clock.time) -> None:
        self.key = hmac.new(token.encode(), b"trading-web session", "sha256").digest()
        self.lifetime = lifetime
        self.clock = clock

    def _mac(self, body: str) -> str:
        return hmac.new(self.key, body.encode(), "sha256").hexdigest()

    def issue(self) -> str:
        body = f"{int(self.clock() + self.lifetime)}.{os.urandom(16).hex()}"
        return f"{body}.{self._mac(body)}"

    def valid(self, value: str) -> bool:
        body, _, mac = value.rpartition(".")
        expires = body.partition(".")[0]
        if not (mac and expires.isdigit() and value.isascii()):
            return False
        return hmac.compare_digest(mac, self._mac(body)) and int(expires) > self.clock()


class Budget:
    """Token buckets for login attempts: per client ``(burst, per second)`` and in all.

    An attempt is paid for before its token is compared, so guesses sent in parallel are
    counted like guesses in a row (a delay after a wrong guess would not slow those). The
    overall bucket caps a guesser with many addresses; the table of clients is bounded
    (the least recently seen is forgotten first)."""

    def __init__(self, per_client: tuple[int, float] = LOGIN_PER_CLIENT,
                 overall: tuple[int, float] = LOGIN_OVERALL, *, max_clients: int = 1024,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.per_client, self.overall = per_client, overall
        self.max_clients = max_clients
        self.clock = clock
        self.buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when)
        self.all = (float(overall[0]), clock())

    @staticmethod
    def _spend(state: tuple[float, float], burst: int, rate: float,
               now: float) -> tuple[tuple[float, float], float]:
        """(the bucket after one attempt, seconds to wait: 0 when the attempt may go on)."""
        tokens = min(float(burst), state[0] + (now - state[1]) * rate)
        if tokens < 1.0:
            return (tokens, now), (1.0 - tokens) / rate
        return (tokens - 1.0, now), 0.0

    def take(self, client: str) -> float:
        """Spend one attempt for ``client``: 0.0 when it may go on, else the seconds until
        it may try again."""
        now = self.clock()
        burst, rate = self.per_client
        state = self.buckets.pop(client, (float(burst), now))
        self.buckets[client], wait = self._spend(state, burst, rate, now)
        while len(self.buckets) > self.max_clients:
            del self.buckets[next(iter(self.buckets))]
        if wait:
            return wait
        self.all, wait = self._spend(self.all, *self.overall, now)
        return wait


# -- the middleware -------------------------------------------------------------------------
class Guard:
    """Host, size and token checks before the app; security headers on every answer (see the
    module docstring)."""

    OPEN = ("/static/", "/login")  # what the login page itself needs

    def __init__(self, app, *, token: str, hosts: list[str],
                 sessions: Sessions | None = None) -> None:
        self.app, self.token = app, token
        self.sessions = sessions or (Sessions(token) if token else None)
        names = {h.lower() for h in hosts}
        self.any_host = "*" in names
        self.hosts = LOOPBACK_HOSTS | names | (_own_names() if token else set())

    @property
    def state(self):
        return self.app.state

    def _host_ok(self, scope) -> bool:
        if self.any_host:
            return True
        host = header(scope, b"host").lower()
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return name in self.hosts or host in self.hosts or _is_ip_literal(name)

    def _authorized(self, scope) -> bool:
        if not self.token or scope["path"].startswith(self.OPEN):
            return True
        given = bearer(scope)
        if given:
            return same(given, self.token)
        assert self.sessions is not None
        return self.sessions.valid(cookie(scope, COOKIE))

    def _refusal(self, scope):
        """The answer that refuses this request before the app, or None to let it in."""
        from starlette.responses import JSONResponse, Response

        if not self._host_ok(scope):
            return Response("unknown Host: add it to web.hosts to serve it\n",
                            status_code=421, media_type="text/plain")
        length = header(scope, b"content-length")
        if length and (not length.isdigit() or int(length) > FORM_LIMIT):
            return too_large()
        if self._authorized(scope):
            return None
        if scope["path"].startswith("/api/"):
            return JSONResponse({"error": {"problem": "unauthorized", "message":
                                           "this dashboard needs its token (web.token)"}},
                                status_code=401)
        return Response(status_code=303, headers={
            "location": "/login?next=" + quote(scope["path"])})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *HEADERS]}
            await send(message)

        refusal = self._refusal(scope)
        if refusal is not None:
            return await refusal(scope, receive, send_with_headers)
        await self.app(scope, receive, send_with_headers)


def too_large():
    """413, and the connection closed after it: the rest of the body is never read."""
    from starlette.responses import Response

    return Response(f"a form is at most {FORM_LIMIT} bytes\n", status_code=413,
                    media_type="text/plain", headers={"connection": "close"})


async def read_form(request) -> dict[str, str]:
    """The urlencoded form in ``request``'s body, read as it streams in and refused (413)
    past :data:`FORM_LIMIT`: a body without a Content-Length (chunked) is cut off there, never
    read whole. A client that hangs up mid-body gets 400 (no one reads it; no traceback)."""
    from urllib.parse import parse_qs

    from starlette.exceptions import HTTPException
    from starlette.requests import ClientDisconnect

    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > FORM_LIMIT:
                raise HTTPException(413, f"a form is at most {FORM_LIMIT} bytes",
                                    headers={"connection": "close"})
    except ClientDisconnect:
        raise HTTPException(400, "the client hung up before its form was complete") from None
    parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[-1] for k, v in parsed.items()}


def _own_names() -> set[str]:
    """This machine's host name, which a browser on the network uses with a token."""
    import socket

    name = socket.gethostname().lower()
    return {name, name.split(".", 1)[0]} if name else set()


def _is_ip_literal(name: str) -> bool:
    """An address, not a name: DNS rebinding needs a name the attacker controls."""
    import ipaddress

    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True
