"""The dashboard as an ASGI application (Starlette): pages, their JSON under /api/, live events.

Every page is a table first: it renders on the server and works without JavaScript. Its data
is also at ``/api/<page>`` as JSON. Each page shows one stream of predictions, chosen by the
query (``?origin=&source=&predictor=``; :mod:`trading.web.streams`). Two pages add a script:
the symbol page draws its chart with lightweight-charts (shipped in ``static/vendor`` with its
licence) from ``/api/symbol/<SYMBOL>?<its stream>``, and the events page follows
``/events/stream`` (server-sent events).

Security, in :mod:`trading.web.guard` (an ASGI middleware around everything, and the login's
pieces):

- Every string from outside (headlines, symbols, reasons, error messages) goes through
  Jinja2's autoescaping; scripts insert text with ``textContent`` only.
- A content security policy without ``unsafe-inline``: scripts and styles only from this
  origin, no inline scripts, no frames, forms post only here.
- Only Host names that cannot be rebound to this address are served (a page on another site
  cannot read the dashboard), with a token or without.
- No body larger than a form is read: a larger Content-Length is refused before, a body
  without one is cut off at the limit.
- Read-only by default. With ``web.token`` set, every request needs it (an
  ``Authorization: Bearer`` header, or the signed session cookie that ``/login`` sets; login
  attempts are budgeted). Actions (run a prediction, activate a model) are off unless
  ``web.allow_actions``, and even then need the token in the form or header itself, never
  the cookie alone (so another site cannot post one); both are checked before a body is read.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from trading.errors import InvalidParams, InvalidSymbol, NotFound, TradingError
from trading.web.guard import (COOKIE, SESSION_S, Budget, Guard, Sessions, bearer, client_key,
                               is_https, read_form, safe_next, same)

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
SSE_POLL_S = 1.0
SSE_KEEPALIVE_S = 15.0
# Event streams open at once. A stream is an answer that never ends, so the connection cap
# (trading.web.limits) cannot give its place to a newcomer: 256 streams from one script left
# every page a 503 (issue 27). Past this many the oldest stream ends (its browser reconnects
# after the `retry:` below, taking the next oldest's place), and its connection goes back to
# being idle, which the cap can reclaim. One user with a tab per device needs a few; each
# costs a store read a second (SSE_POLL_S) on the thread pool.
MAX_STREAMS = 32

NAV = [("/", "Overview"), ("/history", "History"), ("/accuracy", "Accuracy"),
       ("/models", "Models"), ("/services", "Services"), ("/events", "Events")]


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
    streams: dict[int, asyncio.Event] = {}  # the open event streams, oldest first
    opened = iter(range(1 << 62))

    budget = Budget()
    sessions = Sessions(token) if token else None

    def render(request: Request, name: str, status: int = 200,
               headers: dict[str, str] | None = None, **context) -> HTMLResponse:
        if not env_holder:
            env_holder.append(_environment(cache_dir))
        page = env_holder[0].get_template(name).render(
            nav=NAV, path=request.url.path, actions=actions, token_set=bool(token), **context)
        return HTMLResponse(page, status_code=status, headers=headers)

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
        return dashboard.history(_symbol(sym) if sym else None, _limit(request),
                                 request.query_params)

    def events(request: Request):
        return {"events": dashboard.events(limit=_limit(request, 50), latest=True)}

    def symbol(request: Request):
        return dashboard.symbol(_symbol(request.path_params["symbol"]), request.query_params)

    async def stream(request: Request) -> Response:
        """Server-sent events: every new event in the store, as it is appended."""
        last = request.headers.get("last-event-id", "")
        after = int(last) if last.isdigit() else None

        async def gen():
            nonlocal after
            mine, done = next(opened), asyncio.Event()
            streams[mine] = done
            while len(streams) > MAX_STREAMS:  # the oldest gives way (see MAX_STREAMS)
                streams.pop(next(iter(streams))).set()
            try:
                if after is None:
                    tail = await run_in_threadpool(dashboard.events, 0, 1, True)
                    after = tail[-1]["id"] if tail else 0
                yield "retry: 3000\n\n"
                quiet = 0.0
                while not stopping.is_set() and not done.is_set():
                    fresh = await run_in_threadpool(dashboard.events, after, 100)
                    for e in fresh:
                        after = e["id"]
                        yield (f"id: {e['id']}\n"
                               f"data: {json.dumps(e, separators=(',', ':'))}\n\n")
                    quiet = 0.0 if fresh else quiet + SSE_POLL_S
                    if quiet >= SSE_KEEPALIVE_S:
                        quiet = 0.0
                        yield ": keep-alive\n\n"
                    if not fresh:
                        try:
                            await asyncio.wait_for(done.wait(), SSE_POLL_S)
                        except asyncio.TimeoutError:
                            pass
            finally:
                streams.pop(mine, None)

        return StreamingResponse(gen(), media_type="text/event-stream",
                                 headers={"cache-control": "no-store"})

    # -- login and actions --------------------------------------------------------------
    async def login(request: Request) -> Response:
        """The token, once, for a session cookie. Each attempt is paid for before its body is
        read or its token compared (:class:`~trading.web.guard.Budget`)."""
        nxt = safe_next(request.query_params.get("next", "/"))
        if request.method == "GET":
            return render(request, "login.html", next=nxt, error=None)
        wait = budget.take(client_key(request.scope))
        if wait:
            seconds = math.ceil(wait)
            return render(request, "login.html", status=429, next=nxt,
                          headers={"retry-after": str(seconds)},
                          error=f"too many attempts: try again in {seconds} s")
        fields = await read_form(request)
        nxt = safe_next(fields.get("next", "/"))
        if not same(fields.get("token", ""), token):
            return render(request, "login.html", status=401, next=nxt,
                          error="wrong token" if token else "this dashboard has no token set")
        assert sessions is not None
        response = Response(status_code=303, headers={"location": nxt})
        response.set_cookie(COOKIE, sessions.issue(), max_age=SESSION_S, httponly=True,
                            samesite="strict", secure=is_https(request.scope), path="/")
        return response

    async def action(request: Request) -> Response:
        """Run an action. Whether actions are on is decided before the body is read (and,
        with a token, the :class:`Guard` has checked the cookie or header before that)."""
        name = request.path_params["name"]
        if not bool(cfg["web.allow_actions"]):
            raise HTTPException(403, "actions are off (set web.allow_actions = true)")
        if not token:
            raise HTTPException(403, "actions need web.token set")
        fields = await read_form(request)
        if not same(fields.get("token") or bearer(request.scope), token):
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
    def problem(request: Request, status: int, code: str, message: str,
                headers: dict[str, str] | None = None) -> Response:
        if wants_json(request):
            return JSONResponse({"error": {"problem": code, "message": message}},
                                status_code=status, headers=headers)
        return render(request, "error.html", status=status, headers=headers,
                      status_code=status, message=message)

    async def on_trading_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, TradingError)
        status = 400 if isinstance(exc, (InvalidParams, InvalidSymbol)) else \
            404 if isinstance(exc, NotFound) else 503
        return problem(request, status, getattr(exc, "problem", "error"), str(exc))

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return problem(request, exc.status_code, "http", exc.detail, exc.headers)

    async def on_bug(request: Request, exc: Exception) -> Response:
        logger.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return problem(request, 500, "internal-error",
                       "internal error (logged; see `trading logs web`)")

    pages = [
        ("/", "/api/overview", "overview.html", lambda r: dashboard.overview(r.query_params)),
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
    return Guard(app, token=token, hosts=cfg["web.hosts"],  # type: ignore[return-value]
                 sessions=sessions)
