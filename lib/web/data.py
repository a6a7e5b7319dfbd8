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

The services page asks systemd (:mod:`trading.ops.systemd`), as ``trading status`` does, and
shows a timer's last run only when one happened (:func:`timer_rows`). Which stream of
predictions each page shows is :mod:`trading.web.streams`' business.

The module is long because it is the one place that says, page by page, what is shown and
from where; the models page's view of a registry row and the timers' honest times are here
with the rest.
Nothing here imports pandas, numpy or matplotlib (tests/test_web.py checks ``sys.modules``).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, time, timedelta
from typing import Any

from trading import clock
from trading.errors import StoreUnavailable, TradingError
from trading.runtime.store import Store

logger = logging.getLogger(__name__)

JSON = dict[str, Any]
CLOSE = time(16, 15)  # Sydney: a session's prices are final after the closing auction
INTRADAY_PERIOD = "1mo"  # how much of an intraday series the symbol page draws


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

    def _read(self, fn, *args, empty, **kwargs):
        """A store read; a store that does not exist yet is the empty answer, not an error."""
        try:
            return fn(self.store, *args, **kwargs)
        except StoreUnavailable as exc:
            if not self.cfg.db_path.exists():
                return empty
            raise TradingError(str(exc)) from exc

    # -- pages ---------------------------------------------------------------------------
    def default_stream(self) -> JSON:
        """The stream a page shows unless asked: the live calls of the configured predictor
        from the configured source's kind of data (when there are none, the overview shows
        its newest live stream from another source, and says which)."""
        from trading.signals.ledger import source_kind

        return {"origin": "live", "source": source_kind(self.cfg["source"]),
                "predictor": self.cfg["predictor"]}

    def _streams(self, symbol: str | None = None) -> list[JSON]:
        from trading.web import streams

        return self._read(streams.available, symbol, empty=[])

    def overview(self, params: Mapping[str, Any] | None = None) -> JSON:
        """Per symbol of one stream (the default one, or the one ``params`` asks for: origin,
        source, predictor), the latest call with its price, change on the day, what it was
        before and since when, and the market context once; and the other streams stored."""
        from trading.web import streams

        now = self.now()
        others = self._streams()
        default = self.default_stream()
        stream = streams.choose(params or {}, default, others,
                                fallback={"origin": "live", "predictor": default["predictor"]})
        answer = self._read(streams.overview, stream, empty={"calls": [], "market": None})
        for p in answer["calls"]:
            p["stale"] = staleness(p, now) if p["origin"] == "live" else None
        for s in others:
            s["shown"] = streams.same(stream, s)
        return {**answer, "stream": stream, "streams": others,
                "last_session": last_session(now), "store": str(self.cfg.db_path),
                "now": now.isoformat(timespec="seconds")}

    def history(self, symbol: str | None = None, limit: int = 100,
                params: Mapping[str, Any] | None = None) -> JSON:
        """Stored predictions of one stream (as the overview chooses it; ``all=1`` in
        ``params``: every stream, each row saying its own)."""
        from trading.signals import ledger
        from trading.web import streams

        params = params or {}
        every = params.get("all") in ("1", "true", "yes")
        others = self._streams(symbol)
        stream = None if every else streams.choose(params, self.default_stream(), others,
                                                     fallback={})
        if stream is None:
            rows = self._read(ledger.history, symbol, None, limit, empty=[])
        else:
            rows = self._read(streams.history, stream, symbol, limit, empty=[])
        for s in others:
            s["shown"] = stream is not None and streams.same(stream, s)
        return {"symbol": symbol, "limit": limit, "stream": stream, "streams": others,
                "predictions": rows}

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

    def symbol(self, symbol: str, params: Mapping[str, Any] | None = None,
               period: str = "1y") -> JSON:
        """The symbol page, all from one stream: its candles from the source the stream's
        calls were made from (``csv:/dir``, sample, yahoo), and only that stream's calls as
        markers and rows, so a replay of real prices is never drawn over sample candles.

        The stream is the one ``params`` asks for (origin, source, predictor), else the
        default one when the symbol has calls in it, else the symbol's newest. Its latest
        call comes with its inputs (headlines); an unreachable market-data is a note, not a
        failed page (the tables still show)."""
        from trading.web import streams

        now = self.now()
        params = params or {}
        others = self._streams(symbol)
        stream = streams.choose(params, self.default_stream(), others, fallback={})
        sel = {k: stream.get(k) for k in streams.KEYS}
        latest = self._read(streams.history, sel, symbol, 1, True, empty=[])
        latest = latest[0] if latest else None
        # The candles' source: the spec the stream's latest call was made from (a csv
        # folder's path with it), and the rows and markers of that spec only.
        spec = self._source_of(symbol, sel) if latest else None
        if spec and ":" in spec:
            sel["source"] = spec
        history = self._read(streams.history, sel, symbol, 200, empty=[])
        if latest is not None:
            market = (latest.get("inputs") or {}).get("market") or {}
            latest["as_of"], latest["age_s"] = market.get("as_of"), market.get("age_s")
            # A replay's calls are history by design: old data is what they were made of.
            latest["stale"] = (None if (latest.get("stream") or {}).get("origin") == "replay"
                               else staleness(latest, now))
            latest["words"] = streams.in_words(latest, market,
                                               (latest.get("inputs") or {}).get("sentiment"))
            latest["reasons_own"] = streams.own_reasons(latest)
            latest["probability_text"] = streams.probability_text(latest)
            latest["predictor_label"] = streams.label_of(latest)
            if history:
                history[0] = {**history[0], **{k: v for k, v in latest.items()
                                               if k != "inputs"}}
        source = spec or (stream.get("source") if stream.get("source") != "unknown" else None)
        # The configured predictor's interval (issue 29): an intraday one draws that series,
        # a month of its bars (the bar in progress last, its indicators left out), and marks
        # each call on the bar it was made from.
        interval = self.cfg["predictor_interval"]
        chart: JSON = {"bars": [], "indicators": {}, "error": None, "source": source,
                       "interval": interval}
        try:
            answer = self.client.call("market-data", "get_bars", {
                "symbol": symbol, "indicators": True,
                **({"period": period} if interval == "1d" else
                   {"interval": interval, "period": INTRADAY_PERIOD}),
                **({"source": source} if source else {})})
            chart.update(bars=answer["bars"], indicators=answer.get("indicators") or {},
                         stale=answer.get("stale"), source=answer.get("source"))
        except TradingError as exc:
            chart["error"] = str(exc)
        first = chart["bars"][0]["date"] if chart["bars"] else None
        chart["markers"] = self._read(streams.markers, symbol, sel, first, interval,
                                      empty=[]) if latest is not None else []
        for s in others:
            s["shown"] = latest is not None and streams.same(stream, s)
        return {"symbol": symbol, "stream": {**stream, "source": sel["source"]},
                "streams": others, "latest": latest, "history": history, "chart": chart}

    def _source_of(self, symbol: str, sel: Mapping[str, Any]) -> str | None:
        """The source spec of the symbol's latest call in the selected stream, so the chart's
        bars are the bars the calls saw."""
        from trading.web import streams

        rows = self._read(streams.history, sel, symbol, 1, empty=[])
        if not rows:
            return None
        try:
            got = self.store.query("SELECT source, data_source FROM predictions WHERE id = ?",
                                   (rows[0]["id"],))
        except StoreUnavailable:
            return None
        return (got[0]["source"] or got[0]["data_source"]) if got else None

    def models(self) -> JSON:
        """The registered models with their walk-forward scores (:func:`model_view`)."""
        try:
            models = self.client.call("training", "models")
        except TradingError as exc:
            return {"models": [], "error": str(exc)}
        return {"models": [model_view(m) for m in models], "error": None}

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
            out["timers"] = timer_rows(manager, self._job_runs())
        except (systemd.SystemdError, OSError, subprocess.TimeoutExpired) as exc:
            out["error"] = f"cannot read systemd's state: {exc}"
        return out

    def _job_runs(self) -> dict[str, str]:
        """The scheduled jobs' own record of their runs in the store, by the service that runs
        them: the predict job records each run it plans alerts for (``alert_runs``)."""
        try:
            rows = self.store.query("SELECT max(created_at) AS t FROM alert_runs"
                                    " WHERE kind = 'job'")
        except (TradingError, sqlite3.OperationalError):  # no store, or one before 0015
            return {}
        return {"trading-predict.service": rows[0]["t"]} if rows and rows[0]["t"] else {}

    # -- actions (token and web.allow_actions checked by the app) --------------------------
    def predict(self, symbols: list[str]) -> JSON:
        return self.client.call("prediction", "generate_predictions",
                                {"symbols": symbols or None}, timeout=120)

    def activate(self, version: str | None) -> JSON | None:
        return self.client.call("training", "activate", {"version": version})


# -- the models page ---------------------------------------------------------------------------
SCORERS = (("model", "model (raw)"), ("rules", "the rules"), ("majority", "majority class"))


def model_view(m: JSON) -> JSON:
    """A registered model as the page shows it: its walk-forward (out-of-sample) scores beside
    the baselines', the calibrated Brier score, the verdict and whether it can be activated;
    counts as whole numbers."""
    metrics = m.get("metrics") if isinstance(m.get("metrics"), dict) else {}
    oos = metrics.get("out_of_sample") if isinstance(metrics.get("out_of_sample"), dict) else {}
    cal = metrics.get("calibration") if isinstance(metrics.get("calibration"), dict) else {}
    scores = []
    for key, name in SCORERS:
        s = oos.get(key)
        if isinstance(s, dict):
            scores.append({"name": name, "accuracy": s.get("accuracy"), "auc": s.get("auc"),
                           "brier": s.get("brier"), "n": s.get("n")})
    calibrated = cal.get("calibrated") if isinstance(cal.get("calibrated"), dict) else None
    if calibrated:
        scores.insert(1, {"name": "model (calibrated)", "accuracy": None, "auc": None,
                          "brier": calibrated.get("brier"), "n": cal.get("rows")})
    verdict = metrics.get("verdict") if isinstance(metrics.get("verdict"), dict) else None
    if verdict is None:
        model_b = (oos.get("model") or {}).get("brier")
        major_b = (oos.get("majority") or {}).get("brier")
        verdict = ({"beats_majority": model_b < major_b,
                    "why": f"Brier {model_b:.4f} against {major_b:.4f} for the majority class"}
                   if isinstance(model_b, (int, float)) and isinstance(major_b, (int, float))
                   else {"beats_majority": False, "why": "no out-of-sample scores recorded"})
    if m.get("active"):
        state = "active: live predictions use it"
    elif verdict.get("beats_majority"):
        state = "can be activated"
    else:
        state = ("inactive, and not activated from here: it does not beat the walk-forward "
                 "base rate (`trading activate VERSION --force` overrides)")
    return {**{k: v for k, v in m.items() if k not in ("metrics", "path")},
            "rows": metrics.get("rows"), "sessions": metrics.get("sessions"),
            "folds": metrics.get("folds"), "gap": metrics.get("gap"),
            "scores": scores, "verdict": verdict, "state": state,
            "activatable": bool(verdict.get("beats_majority")) and not m.get("active")}


# -- the services page: timers -----------------------------------------------------------------
def systemd_time(value: str | None) -> str | None:
    """A timestamp as ``systemctl show --timestamp=unix`` prints it (``@1764800000``; the
    pretty UTC form too), as an ISO time in UTC; None for unset ("n/a", "", 0)."""
    from datetime import timezone

    v = (value or "").strip()
    if v in ("", "n/a", "0", "[not set]"):
        return None
    if v.startswith("@"):
        try:
            secs = float(v[1:])
        except ValueError:
            return None
        return None if secs <= 0 else datetime.fromtimestamp(secs, timezone.utc).isoformat()
    try:
        t = datetime.strptime(v, "%a %Y-%m-%d %H:%M:%S UTC")
    except ValueError:
        return None
    return t.replace(tzinfo=timezone.utc).isoformat()


TIMER_TIMES = ["Id", "Unit", "NextElapseUSecRealtime", "LastTriggerUSec"]
RUN_TIMES = ["Id", "ExecMainStartTimestamp"]


def timer_rows(manager, recorded: Mapping[str, str]) -> list[JSON]:
    """The trading timers with their times as instants (ISO, UTC; the page shows them in
    Sydney time) and a last run only when one happened.

    systemd's ``LastTriggerUSec`` is not enough: for a ``Persistent=`` timer it is the time of
    the stamp file, which systemd writes when the timer is first started, so a fresh install
    shows a "last trigger" that never ran anything. A run is known from the service's own
    start (``ExecMainStartTimestamp``, since the manager started) or from the job's record
    in the store (``recorded``: service -> ISO time); the stamp alone is shown as such."""
    from trading.ops import systemd

    rows = systemd.timer_rows(manager)
    if not rows:
        return []
    timers = _show_times(manager, [r.timer for r in rows], TIMER_TIMES)
    units = sorted({r.unit for r in rows if r.unit})
    runs = _show_times(manager, units, RUN_TIMES) if units else {}
    out = []
    for r in rows:
        t = timers.get(r.timer, {})
        started = systemd_time(runs.get(r.unit or "", {}).get("ExecMainStartTimestamp"))
        seen = [x for x in (started, recorded.get(r.unit or "")) if x]
        last = max(seen, key=_instant) if seen else None
        stamp = systemd_time(t.get("LastTriggerUSec"))
        out.append({"timer": r.timer, "unit": r.unit, "state": r.state,
                    "next_run": systemd_time(t.get("NextElapseUSecRealtime")),
                    "last_run": last,
                    "stamp_only": stamp if stamp and last is None else None})
    return out


def _instant(iso: str) -> datetime:
    from datetime import timezone

    t = datetime.fromisoformat(iso)
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _show_times(manager, units: list[str], props: list[str]) -> dict[str, dict[str, str]]:
    """``systemctl show`` of ``props`` with every time in UTC: ``--timestamp=unix`` covers
    the ``*Timestamp`` properties, and TZ=UTC the timers' (systemd 252 prints those in the
    client's zone whatever ``--timestamp`` says, e.g. "Fri 2026-12-04 20:24:56 AEDT")."""
    import os
    import subprocess

    from trading.ops import systemd

    r = subprocess.run([*manager.systemctl_args, "show", "--timestamp=unix",
                        *[f"--property={p}" for p in props], "--", *units],
                       capture_output=True, text=True, timeout=systemd.TIMEOUT,
                       env={**os.environ, "LC_ALL": "C", "TZ": "UTC", "SYSTEMD_PAGER": "",
                            "SYSTEMD_COLORS": "0"})
    if r.returncode != 0:
        raise systemd.SystemdError(f"systemctl {manager.flag}show failed: {r.stderr.strip()}")
    return {b.get("Id", u): b for u, b in zip(units, systemd.parse_show(r.stdout))}
