"""What the dashboard shows, and where each piece comes from.

Two sources, chosen per piece:

- **The store, read-only**, for what lives in it and is read by plain SQL: the latest call of
  each symbol, the prediction history with outcomes and the event log.
  These are the prediction service's own functions (:mod:`trading.signals.ledger`,
  ``outcomes``, ``events``) over a ``mode=ro`` connection, so the answers are the ones
  ``trading history`` gets, a page view starts no handler (an open events page polling the
  prediction service would keep it from its idle exit forever), and the web process can
  never write.
- **The services, over JSON-RPC**, for what another service owns and computes: bars and
  their indicators (market-data, ``get_bars``; it owns the sources, the bar cache and numpy),
  the model registry (training, ``models``; reading it imports numpy), the accuracy report
  (prediction, ``accuracy_report``: a scorecard over a million calls is numpy's work, seconds
  and a few hundred MB, under the prediction service's memory cap), and the actions
  (prediction ``generate_predictions``, training ``activate``): writes stay with the service
  that owns them.

The services page asks systemd (:mod:`trading.ops.systemd`), as ``trading status`` does.
Nothing here imports pandas, numpy or matplotlib (tests/test_web.py checks ``sys.modules``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime, time, timedelta
from typing import Any

from trading import clock
from trading.errors import StoreUnavailable, TradingError
from trading.runtime.store import Store

logger = logging.getLogger(__name__)

JSON = dict[str, Any]
CLOSE = time(16, 15)  # Sydney: a session's prices are final after the closing auction


def sydney_now() -> datetime:
    return clock.now(clock.sydney())


def last_session(now: datetime) -> str:
    """The last weekday session whose close has passed at ``now`` (Sydney time). Holidays are
    not subtracted: on one, the previous session's calls are marked stale, which they are."""
    day = now.date() if now.time() >= CLOSE else now.date() - timedelta(days=1)
    while day.weekday() >= 5:
        day -= timedelta(days=1)
    return day.isoformat()


def staleness(p: JSON, now: datetime) -> str | None:
    """Why a call's data is stale, in words, or None when it is current."""
    if p.get("data_stale"):
        return "the market data could not be refreshed when this call was made"
    as_of = p.get("as_of") or p.get("session")
    want = last_session(now)
    if isinstance(as_of, str) and as_of[:10] < want:
        return f"data from {as_of[:10]}; the last session was {want}"
    return None


class Dashboard:
    """The pages' data. ``client`` is a :class:`trading.runtime.client.Client`; when not given,
    one is built on first use that runs a peer without a socket in-process through
    ``registry`` (service name -> its class; none: no in-process fallback). ``services`` names
    the socket-activated services the services page lists. The entry point gives both
    (``python -m trading.web``, ``trading web``: the handlers' registry), as it gives a
    handler its peers' registry: nothing in the library imports a handler. ``store`` is a
    read-only :class:`Store`."""

    def __init__(self, cfg, *, client=None, registry: Callable[[str], type] | None = None,
                 services: Iterable[str] = (), store: Store | None = None,
                 now=sydney_now) -> None:
        self.cfg = cfg
        self.store = store if store is not None else Store(cfg.db_path, readonly=True)
        self._client = client
        self.registry = registry
        self.service_names = tuple(services)
        self.now = now

    @property
    def client(self):
        if self._client is None:
            from trading.runtime.client import Client, LocalTransport

            local = LocalTransport(self.registry) if self.registry is not None else None
            # One connection per call: an open connection would keep a peer from its idle exit.
            self._client = Client(self.cfg, local=local, keep_connections=False)
        return self._client

    def close(self) -> None:
        self.store.close()
        if self._client is not None:
            self._client.close()

    def _read(self, fn, *args, empty):
        """A store read; a store that does not exist yet is the empty answer, not an error."""
        try:
            return fn(self.store, *args)
        except StoreUnavailable as exc:
            if not self.cfg.db_path.exists():
                return empty
            raise TradingError(str(exc)) from exc

    # -- pages ---------------------------------------------------------------------------
    def overview(self) -> JSON:
        from trading.signals import ledger

        now = self.now()
        calls = self._read(ledger.latest_each, empty=[])
        for p in calls:
            p["stale"] = staleness(p, now)
        return {"calls": calls, "last_session": last_session(now),
                "store": str(self.cfg.db_path), "now": now.isoformat(timespec="seconds")}

    def history(self, symbol: str | None = None, limit: int = 100) -> JSON:
        from trading.signals import ledger

        return {"symbol": symbol, "limit": limit,
                "predictions": self._read(ledger.history, symbol, None, limit, empty=[])}

    def accuracy(self) -> JSON:
        """The scorecard ``trading report`` shows, from the prediction service; when it
        cannot answer, an empty one that says why."""
        try:
            answer = self.client.call("prediction", "accuracy_report", {})
        except TradingError as exc:
            return {"predictions": {}, "outcomes": 0, "hold_band": {}, "horizons": {},
                    "error": str(exc)}
        return {**answer, "error": None}

    def events(self, after_id: int = 0, limit: int = 50, latest: bool = False) -> list[JSON]:
        from trading.signals import events

        return self._read(events.read, after_id, None, limit, latest, empty=[])

    def symbol(self, symbol: str, period: str = "1y") -> JSON:
        """The symbol page: its latest call with the inputs (headlines), its history, and
        bars with indicators from market-data (an unreachable market-data is a note, not a
        failed page: the tables still show)."""
        from trading.signals import ledger

        now = self.now()
        history = self._read(ledger.history, symbol, None, 200, True, empty=[])
        latest = history[0] if history else None
        if latest is not None:
            market = (latest.get("inputs") or {}).get("market") or {}
            latest["as_of"], latest["age_s"] = market.get("as_of"), market.get("age_s")
            latest["stale"] = staleness(latest, now)
        source = self._source_of(symbol)
        chart: JSON = {"bars": [], "indicators": {}, "error": None, "source": source}
        try:
            answer = self.client.call("market-data", "get_bars", {
                "symbol": symbol, "period": period, "indicators": True,
                **({"source": source} if source else {})})
            chart.update(bars=answer["bars"], indicators=answer.get("indicators") or {},
                         stale=answer.get("stale"), source=answer.get("source"))
        except TradingError as exc:
            chart["error"] = str(exc)
        # One marker per session: the last call made on it (the timers call every 30 min).
        marks: dict[str, JSON] = {}
        for p in reversed(history):
            marks[p["session"]] = {"time": p["session"], "action": p["action"],
                                   "confidence": p["confidence"], "id": p["id"]}
        chart["markers"] = sorted(marks.values(), key=lambda m: m["time"])
        for p in history[1:]:
            p.pop("inputs", None)  # only the latest call's headlines are shown
        return {"symbol": symbol, "latest": latest, "history": history, "chart": chart}

    def _source_of(self, symbol: str) -> str | None:
        """The source the symbol's latest call was made from, so the chart's bars are the
        bars the calls saw (sample data for sample calls)."""
        try:
            rows = self.store.query("SELECT source FROM predictions WHERE symbol = ? "
                                    "ORDER BY created_at DESC, id DESC LIMIT 1", (symbol,))
        except StoreUnavailable:
            return None
        return rows[0]["source"] if rows else None

    def models(self) -> JSON:
        try:
            return {"models": self.client.call("training", "models"), "error": None}
        except TradingError as exc:
            return {"models": [], "error": str(exc)}

    def services(self) -> JSON:
        import subprocess

        from trading.ops import systemd

        manager, installed = systemd.detect()
        out: JSON = {"systemd": manager.scope if manager else None, "installed": installed,
                     "services": [], "timers": [], "error": None}
        if manager is None:
            out["error"] = ("no systemd manager answers here: the services run in-process"
                            if not installed else "the systemd manager is not reachable")
            return out
        try:
            out["services"] = [r.as_json() for r in systemd.service_rows(manager,
                                                                          self.service_names)]
            out["timers"] = [t.as_json() for t in systemd.timer_rows(manager)]
        except (systemd.SystemdError, OSError, subprocess.TimeoutExpired) as exc:
            out["error"] = f"cannot read systemd's state: {exc}"
        return out

    # -- actions (token and web.allow_actions checked by the app) --------------------------
    def predict(self, symbols: list[str]) -> JSON:
        return self.client.call("prediction", "generate_predictions",
                                {"symbols": symbols or None}, timeout=120)

    def activate(self, version: str | None) -> JSON | None:
        return self.client.call("training", "activate", {"version": version})
