"""The dashboard as an ASGI application (Starlette): pages, their JSON under /api/, live events.

Every page is a table first: it renders on the server and works without JavaScript. Its data
is also at ``/api/<page>`` as JSON. Two pages add a script: the symbol page draws its chart
with lightweight-charts (shipped in ``static/vendor`` with its licence) from
``/api/symbol/<SYMBOL>``, and the events page follows ``/events/stream`` (server-sent events).

Security, in :class:`Guard` (an ASGI middleware around everything):

- Every string from outside (headlines, symbols, reasons, error messages) goes through
  Jinja2's autoescaping; scripts insert text with ``textContent`` only.
- A content security policy without ``unsafe-inline``: scripts and styles only from this
  origin, no inline scripts, no frames, forms post only here.
- Read-only by default. With ``web.token`` set, every request needs it (an
  ``Authorization: Bearer`` header, or the cookie that ``/login`` sets); without it, only
  loopback Host names are served (a page on another site cannot rebind a name to
  127.0.0.1 and read the dashboard). Actions (run a prediction, activate a model) are off
  unless ``web.allow_actions``, and even then need the token in the form or header itself,
  never the cookie alone (so another site cannot post one).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import threading
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from trading.errors import InvalidParams, InvalidSymbol, NotFound, TradingError

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")
HEADERS = [(b"content-security-policy", CSP.encode()),
           (b"x-content-type-options", b"nosniff"),
           (b"referrer-policy", b"no-referrer"),
           (b"x-frame-options", b"DENY"),
           (b"cross-origin-opener-policy", b"same-origin")]
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
COOKIE = "trading_web_token"
FORM_LIMIT = 16 * 1024
SSE_POLL_S = 1.0
SSE_KEEPALIVE_S = 15.0

NAV = [("/", "Overview"), ("/history", "History"), ("/accuracy", "Accuracy"),
       ("/models", "Models"), ("/services", "Services"), ("/events", "Events")]


# -- security ---------------------------------------------------------------------------------
def _header(scope, name: bytes) -> str:
    for k, v in scope.get("headers") or ():
        if k == name:
            return v.decode("latin-1")
    return ""


def _cookie(scope, name: str) -> str:
    for part in _header(scope, b"cookie").split(";"):
        k, _, v = part.strip().partition("=")
        if k == name:
            return v
    return ""


def _same(given: str, token: str) -> bool:
    return bool(token) and hmac.compare_digest(given.encode(), token.encode())


def bearer(scope) -> str:
    auth = _header(scope, b"authorization")
    return auth[7:].strip() if auth[:7].lower() == "bearer " else ""


class Guard:
    """Host and token checks before the app; security headers on every answer."""

    OPEN = ("/static/", "/login")  # what the login page itself needs

    def __init__(self, app, *, token: str, hosts: list[str]) -> None:
        self.app, self.token = app, token
        self.hosts = LOOPBACK_HOSTS | {h.lower() for h in hosts}

    @property
    def state(self):
        return self.app.state

    def _host_ok(self, scope) -> bool:
        if self.token or "*" in self.hosts:
            return True
        if scope.get("client") is None:
            return True  # a Unix socket peer: the reverse proxy in front decides
        host = _header(scope, b"host").lower()
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return name in self.hosts or host in self.hosts

    def _authorized(self, scope) -> bool:
        if not self.token or scope["path"].startswith(self.OPEN):
            return True
        return _same(bearer(scope) or _cookie(scope, COOKIE), self.token)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *HEADERS]}
            await send(message)

        if not self._host_ok(scope):
            response = Response("unknown Host: set web.hosts (or web.token) to serve it\n",
                                status_code=421, media_type="text/plain")
            return await response(scope, receive, send_with_headers)
        if not self._authorized(scope):
            if scope["path"].startswith("/api/"):
                response = JSONResponse({"error": {"problem": "unauthorized", "message":
                                         "this dashboard needs its token (web.token)"}},
                                        status_code=401)
            else:
                response = Response(status_code=303, headers={
                    "location": "/login?next=" + quote(scope["path"])})
            return await response(scope, receive, send_with_headers)
        await self.app(scope, receive, send_with_headers)


# -- templates --------------------------------------------------------------------------------
def _environment(cache_dir: Path | None):
    import jinja2

    cache = None
    if cache_dir is not None:
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            cache = jinja2.FileSystemBytecodeCache(str(cache_dir))
        except OSError:
            cache = None  # a read-only cache directory costs compile time, nothing else
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(HERE / "templates")),
                             autoescape=True, bytecode_cache=cache, trim_blocks=True,
                             lstrip_blocks=True)
    from trading.web import formatting

    env.filters.update(formatting.FILTERS)
    return env


# -- the app ----------------------------------------------------------------------------------
def create_app(cfg, dashboard=None, *, cache_dir: Path | None = None, registry=None,
               services=()) -> Starlette:
    """The dashboard for configuration ``cfg``; ``dashboard`` defaults to a
    :class:`trading.web.data.Dashboard` on the configured store and services, given
    ``registry`` and ``services`` (see there)."""
    if dashboard is None:
        from trading.web.data import Dashboard

        dashboard = Dashboard(cfg, registry=registry, services=services)
    token: str = cfg["web.token"]
    actions = bool(cfg["web.allow_actions"]) and bool(token)
    stopping = threading.Event()
    env_holder: list[Any] = []

    def render(request: Request, name: str, status: int = 200, **context) -> HTMLResponse:
        if not env_holder:
            env_holder.append(_environment(cache_dir))
        page = env_holder[0].get_template(name).render(
            nav=NAV, path=request.url.path, actions=actions, token_set=bool(token), **context)
        return HTMLResponse(page, status_code=status)

    def wants_json(request: Request) -> bool:
        return request.url.path.startswith("/api/")

    def page(template: str, fetch):
        async def endpoint(request: Request) -> Response:
            data = await run_in_threadpool(fetch, request)
            if wants_json(request):
                return JSONResponse(data)
            return render(request, template, data=data)
        return endpoint

    def _limit(request: Request, default: int = 100) -> int:
        raw = request.query_params.get("limit", str(default))
        if not raw.isdigit() or not 1 <= int(raw) <= 1000:
            raise InvalidParams("limit must be a whole number from 1 to 1000")
        return int(raw)

    def _symbol(raw: str) -> str:
        from trading.market.symbols import normalize

        return normalize(raw)

    def history(request: Request):
        sym = request.query_params.get("symbol") or None
        return dashboard.history(_symbol(sym) if sym else None, _limit(request))

    def events(request: Request):
        return {"events": dashboard.events(limit=_limit(request, 50), latest=True)}

    def symbol(request: Request):
        return dashboard.symbol(_symbol(request.path_params["symbol"]))

    async def stream(request: Request) -> Response:
        """Server-sent events: every new event in the store, as it is appended."""
        last = request.headers.get("last-event-id", "")
        after = int(last) if last.isdigit() else None

        async def gen():
            nonlocal after
            if after is None:
                tail = await run_in_threadpool(dashboard.events, 0, 1, True)
                after = tail[-1]["id"] if tail else 0
            yield "retry: 3000\n\n"
            quiet = 0.0
            while not stopping.is_set():
                fresh = await run_in_threadpool(dashboard.events, after, 100)
                for e in fresh:
                    after = e["id"]
                    yield f"id: {e['id']}\ndata: {json.dumps(e, separators=(',', ':'))}\n\n"
                quiet = 0.0 if fresh else quiet + SSE_POLL_S
                if quiet >= SSE_KEEPALIVE_S:
                    quiet = 0.0
                    yield ": keep-alive\n\n"
                if not fresh:
                    await asyncio.sleep(SSE_POLL_S)

        return StreamingResponse(gen(), media_type="text/event-stream",
                                 headers={"cache-control": "no-store"})

    # -- login and actions --------------------------------------------------------------
    async def form(request: Request) -> dict[str, str]:
        body = await request.body()
        if len(body) > FORM_LIMIT:
            raise InvalidParams("form too large")
        parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        return {k: v[-1] for k, v in parsed.items()}

    def _next(value: str) -> str:
        # Only a local path: never an open redirect to another site.
        return value if value.startswith("/") and not value.startswith("//") else "/"

    async def login(request: Request) -> Response:
        nxt = _next(request.query_params.get("next", "/"))
        if request.method == "GET":
            return render(request, "login.html", next=nxt, error=None)
        fields = await form(request)
        nxt = _next(fields.get("next", "/"))
        if not _same(fields.get("token", ""), token):
            return render(request, "login.html", status=401, next=nxt,
                          error="wrong token" if token else "this dashboard has no token set")
        response = Response(status_code=303, headers={"location": nxt})
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/")
        return response

    async def action(request: Request) -> Response:
        name = request.path_params["name"]
        fields = await form(request) if request.method == "POST" else {}
        if not bool(cfg["web.allow_actions"]):
            raise HTTPException(403, "actions are off (set web.allow_actions = true)")
        if not token:
            raise HTTPException(403, "actions need web.token set")
        if not _same(fields.get("token") or bearer(request.scope), token):
            raise HTTPException(403, "this action needs the token in the form or header")
        if name == "predict":
            wanted = [s for s in fields.get("symbols", "").replace(",", " ").split() if s]
            result = await run_in_threadpool(dashboard.predict, wanted)
        elif name == "activate":
            result = await run_in_threadpool(dashboard.activate,
                                             fields.get("version") or None)
        else:
            raise HTTPException(404, f"no action {name!r}")
        if wants_json(request):
            return JSONResponse({"result": result})
        return render(request, "done.html", name=name, result=result)

    # -- errors ---------------------------------------------------------------------------
    def problem(request: Request, status: int, code: str, message: str) -> Response:
        if wants_json(request):
            return JSONResponse({"error": {"problem": code, "message": message}},
                                status_code=status)
        return render(request, "error.html", status=status, status_code=status,
                      message=message)

    async def on_trading_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, TradingError)
        status = 400 if isinstance(exc, (InvalidParams, InvalidSymbol)) else \
            404 if isinstance(exc, NotFound) else 503
        return problem(request, status, getattr(exc, "problem", "error"), str(exc))

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return problem(request, exc.status_code, "http", exc.detail)

    async def on_bug(request: Request, exc: Exception) -> Response:
        logger.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return problem(request, 500, "internal-error",
                       "internal error (logged; see `trading logs web`)")

    pages = [
        ("/", "/api/overview", "overview.html", lambda r: dashboard.overview()),
        ("/history", "/api/history", "history.html", history),
        ("/accuracy", "/api/accuracy", "accuracy.html", lambda r: dashboard.accuracy()),
        ("/models", "/api/models", "models.html", lambda r: dashboard.models()),
        ("/services", "/api/services", "services.html", lambda r: dashboard.services()),
        ("/events", "/api/events", "events.html", events),
        ("/symbol/{symbol}", "/api/symbol/{symbol}", "symbol.html", symbol),
    ]
    routes = []
    for path, api, template, fetch in pages:
        endpoint = page(template, fetch)
        routes += [Route(path, endpoint), Route(api, endpoint)]
    routes += [
        Route("/events/stream", stream),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/actions/{name}", action, methods=["POST"]),
        Route("/api/actions/{name}", action, methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={
        TradingError: on_trading_error, HTTPException: on_http_error, Exception: on_bug})
    app.state.stopping = stopping
    app.state.dashboard = dashboard
    return Guard(app, token=token, hosts=cfg["web.hosts"])  # type: ignore[return-value]
