"""``trading schedule`` (the timers and when they run) and ``trading job NAME`` (what they run).

``trading job predict|outcomes|train`` is the command the timers' services start. It asks the
ASX calendar first (:mod:`trading.ops.schedule`): on a holiday or outside the session it prints one
line ("market closed: Christmas Day") and exits 0; otherwise it does the same call as
``trading predict`` / ``trading report --evaluate`` / ``trading train`` and prints a one-line
summary for the journal. A predict run is the alert stream: its predictions, and no others,
are planned as alerts (:func:`trading.ops.notify.queue_run`), then everything due is sent.
Where the service's socket cannot be reached the job runs the same handlers in-process and
logs one line saying so (what replaced the old cron proxy's fallback to the monolith;
docs/migrating.md); ``in_process = never`` refuses instead.

The gate is a separate command, not a flag on ``trading predict``,
so a person typing ``trading predict`` on a Sunday evening still gets predictions, and a cron
line can be as simple as ``*/30 * * * * trading job predict`` whatever zone cron's clock is in.

``trading schedule`` reads the manager the install used (``systemctl list-timers -o json`` for
the next and last run, ``systemctl show`` for each timer's calendar and its service's
command), and prints each time in Sydney time and UTC. Without systemd it says so, and how to
schedule the jobs with cron instead.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

import typer

from trading import config as _config
from trading.errors import ServiceUnavailable

from . import common

SYDNEY = "Australia/Sydney"
# Client timeouts per job: a cold prediction chain starts three handlers and fetches prices;
# training takes minutes (the unit's TimeoutStartSec= is a little longer than this).
TIMEOUTS = {"predict": 300.0, "outcomes": 300.0, "train": 3600.0}
CRON_LINE = "*/30 * * * * trading job predict"


def register(app: typer.Typer) -> None:
    app.command("schedule")(schedule)
    app.command("job")(job)


# -- trading job --------------------------------------------------------------------------

def job(
    name: str = typer.Argument(..., metavar="predict|outcomes|train",
                               help="The scheduled job to run."),
    as_json: bool = common.JsonOption,
) -> None:
    """Run a scheduled job if the ASX calendar says so (what the timers start).

    On a holiday or outside the session it prints one line saying why and exits 0. When
    the service's socket cannot be reached (stopped, failed, not installed) the job runs the
    handlers in-process and says so; TRADING_IN_PROCESS=never refuses instead (exit 3).
    TRADING_NOW=2026-12-24T11:00 (Sydney time unless an offset is given) runs the job as if
    it were that moment: it really predicts, stores and sends alerts."""
    from trading.ops import schedule

    if name not in schedule.JOBS:
        raise common.fail(f"unknown job {name!r}: expected one of {', '.join(schedule.JOBS)}",
                          common.EXIT_USAGE)
    moment = schedule.now()
    decision = schedule.gate(name, moment)
    if not decision.run:
        if as_json:
            common.print_json({"job": name, "ran": False, "reason": decision.reason,
                               "at": moment.isoformat()})
        else:
            print(decision.reason, flush=True)
        return
    if not as_json:
        print(f"{decision.reason} ({moment:%a %Y-%m-%d %H:%M %Z}): running {name}", flush=True)
    client = _client(name)
    result = None
    notified = None
    try:
        try:
            result, summary, errors, failed = _run(client, name)
        except ServiceUnavailable as exc:
            if not _unreached(exc):
                raise
            client = _client(name, reason=str(exc))  # the call reached nothing
            result, summary, errors, failed = _run(client, name)
    finally:
        if name in ("predict", "outcomes"):
            notified = _notify(name, result, quiet=as_json)
    if as_json:
        common.print_json({"job": name, "ran": True, "reason": decision.reason,
                           "at": moment.isoformat(), "result": result,
                           **({"in_process": True} if getattr(client, "job_fallback", None)
                              else {}),
                           **({"notify": notified} if notified is not None else {})})
    else:
        print(summary, flush=True)
        for key, err in errors.items():
            msg = err.get("message", err) if isinstance(err, dict) else err
            print(f"{key}: {msg}", flush=True)
        from trading.ops.notify import summary as notify_summary

        for line in notify_summary(notified):
            print(line, flush=True)
    if failed:
        raise typer.Exit(common.EXIT_FAILURE)


FALLBACK = ("{service} cannot be reached ({why}); the job runs the handlers in-process "
            "instead, as the old proxy fell back to the monolith")


def _client(name: str, reason: str | None = None):
    """The job's client. Where the service's socket cannot be reached (no socket: systemd
    holds it stopped, its socket failed, nothing is installed; or a socket file nobody
    listens on), the job runs the same handlers in-process and logs one line saying so: the
    replacement for the old cron proxy's fallback to the monolith. ``in_process = never``
    (``TRADING_IN_PROCESS=never``, as the timer's unit sets) refuses instead: the call fails
    with the client's own one-line error (exit 3).

    ``reason``: the socket was there but refused; every call of this client runs here."""
    from trading import handlers

    cfg = _config.get()
    told: list[str] = []

    def tell(service: str, why: str) -> None:
        if not told:
            told.append(service)
            client.job_fallback = service
            common.note(FALLBACK.format(service=service, why=why))  # stderr: the journal

    def fallback(service: str) -> None:
        from trading.ops.systemd import stopped_reason

        why = stopped_reason(service)
        tell(service, why.split(":", 1)[0] if why else "no service socket installed")

    here = reason is not None or common.IN_PROCESS["asked"]  # or `trading --in-process job`
    client = handlers.client(cfg, on_fallback=fallback, timeout=TIMEOUTS[name],
                             **({"in_process": "always"} if here else {}))
    client.job_fallback = None
    if reason is not None:
        tell(_service(name), reason.split(" (", 1)[0])
    return client


def _service(name: str) -> str:
    return "training" if name == "train" else "prediction"


def _unreached(exc: Exception) -> bool:
    """The call never reached a service: its socket file is there, but nothing accepted the
    connection (so running it here cannot run it twice). Never under ``in_process = never``."""
    return (_config.get()["in_process"] != "never"
            and isinstance(exc.__cause__, (ConnectionRefusedError, FileNotFoundError)))


def _notify(name: str, result: dict | None, *, quiet: bool) -> dict | None:
    """Queue this run's alerts (a predict run's, into the alert stream) and send what is due
    (after outcomes, with the day's digest), after the service committed.

    Runs after a failed call too (earlier messages still wait); a failure here is reported
    and never changes the job's exit status. Apprise is imported only when something is due.
    The digest is of today in Sydney by the job's clock (``TRADING_NOW`` moves it, as it
    moves every clock: :mod:`trading.clock`). A predict run is recorded in the stream even
    without ``notify.urls``, so the digest knows it once alerts are switched on."""
    cfg = _config.get()
    if not cfg["notify.urls"] and not (name == "predict" and result):
        return None
    from trading.ops import notify
    from trading.runtime.store import Store

    try:
        store = Store(cfg.db_path)
        if name == "predict" and result:
            notify.queue_run(store, cfg, result, "job")
        if not cfg["notify.urls"]:
            return None
        from trading.market import asx

        return notify.deliver(store, cfg,
                              digest_day=asx.now().date() if name == "outcomes" else None)
    except Exception as exc:  # noqa: BLE001 - alerts never fail the job
        message = notify.scrub(f"{type(exc).__name__}: {exc}", " ".join(cfg["notify.urls"]))
        if not quiet:
            print(f"notify: not sent this run ({message}); they wait in the outbox",
                  flush=True)
        return {"error": message}


def _run(client, name: str):
    """The job's call: ``(result, summary line, errors, failed)``."""
    if name == "predict":
        result = client.call("prediction", "generate_predictions")
        results, errors = result.get("results") or {}, result.get("errors") or {}
        summary = _predict_summary(results, errors, result)
        failed = bool(errors) and not results and not result.get("unchanged")
    elif name == "outcomes":
        result = client.call("prediction", "evaluate_outcomes")
        errors = result.get("errors") or {}
        summary = (f"scored {result['evaluated']} outcome(s); {result['pending']} "
                   "prediction(s) wait for more sessions")
        failed = False
    else:
        result = client.call("training", "train", {})
        errors = {}
        oos = (result.get("metrics") or {}).get("out_of_sample") or {}
        acc = ", ".join(f"{k} {v['accuracy']:.3f}" for k, v in oos.items()
                        if isinstance(v, dict) and v.get("accuracy") is not None)
        rows = next((v.get("n") for v in oos.values() if isinstance(v, dict)), None)
        summary = (f"registered model {result.get('version')} (not activated: see "
                   f"`trading models`, `trading activate VERSION`); out-of-sample accuracy "
                   f"{acc or 'n/a'}" + (f" on {rows} rows" if rows else ""))
        failed = False
    return result, summary, errors, failed


def _predict_summary(results: dict[str, Any], errors: dict[str, Any],
                     result: dict[str, Any] | None = None) -> str:
    """The run in one line. On an intraday interval (issue 29) a run whose symbols have no
    new completed bar since their last stored call says so instead, and stores nothing."""
    same = (result or {}).get("unchanged") or {}
    interval = (result or {}).get("interval") or "1d"
    if same and not results:
        bars = sorted(set(same.values()))
        text = (f"no new completed {interval} bar since the last call (last bar "
                f"{', '.join(bars)}): nothing stored")
        return text + (f"; {len(errors)} symbol(s) failed" if errors else "")
    actions = Counter(p["action"] for p in results.values())
    counts = ", ".join(f"{n} {a}" for a, n in sorted(actions.items())) or "none"
    calls = " ".join(f"{s} {p['action']} {p['confidence']:.2f}" for s, p in results.items())
    text = f"stored {len(results)} prediction(s) ({counts})"
    if interval != "1d":
        text = f"stored {len(results)} {interval} prediction(s) ({counts})"
    if calls:
        text += f": {calls}"
    if same:
        text += f"; {len(same)} with no new completed bar: not stored again"
    if errors:
        text += f"; {len(errors)} symbol(s) failed"
    return text


# -- trading schedule ---------------------------------------------------------------------

@dataclass
class TimerInfo:
    timer: str
    service: str | None
    runs: str | None              # the service's command line
    calendar: list[str]           # OnCalendar= expressions
    enabled: str                  # enabled, disabled, ...
    state: str                    # ActiveState/SubState of the timer
    next_usec: int | None         # realtime microseconds (includes RandomizedDelaySec)
    last_usec: int | None
    last_result: str | None       # the service's last result (success, exit-code, ...)

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["next"] = times(self.next_usec)
        out["last"] = times(self.last_usec)
        return out


def times(usec: int | None) -> dict[str, str] | None:
    """A realtime timestamp in microseconds as Sydney and UTC ISO strings (None: never)."""
    if not usec:
        return None
    from zoneinfo import ZoneInfo

    t = dt.datetime.fromtimestamp(usec / 1e6, dt.timezone.utc).replace(microsecond=0)
    return {"sydney": t.astimezone(ZoneInfo(SYDNEY)).isoformat(), "utc": t.isoformat()}


def _fmt(usec: int | None) -> str:
    if not usec:
        return "-"
    from zoneinfo import ZoneInfo

    t = dt.datetime.fromtimestamp(usec / 1e6, dt.timezone.utc)
    syd = t.astimezone(ZoneInfo(SYDNEY))
    return f"{syd:%a %Y-%m-%d %H:%M %Z}\n{t:%a %Y-%m-%d %H:%M} UTC"


def _calendar(raw: str) -> list[str]:
    """OnCalendar= expressions from ``TimersCalendar={ OnCalendar=... ; next_elapse=... }``."""
    out = []
    for line in raw.splitlines():
        key, _, value = line.partition("=")
        if key == "TimersCalendar" and "OnCalendar=" in value:
            out.append(value.split("OnCalendar=", 1)[1].split(" ; ", 1)[0].strip())
    return sorted(out)


def _argv(exec_start: str) -> str | None:
    """``{ path=... ; argv[]=/x/bin/trading job predict ; ... }`` -> the command line."""
    if "argv[]=" not in exec_start:
        return None
    return exec_start.split("argv[]=", 1)[1].split(" ; ", 1)[0].strip()


def read_timers(manager: Any) -> list[TimerInfo]:
    """Every installed trading timer as the manager sees it."""
    from trading.ops import systemd

    names = manager.unit_files("trading*.timer")
    if not names:
        return []
    r = manager.systemctl("list-timers", "--all", "--output=json", "--", *names)
    if r.returncode != 0:
        raise systemd.SystemdError(f"systemctl {manager.flag}list-timers failed: "
                                   f"{r.stderr.strip()}")
    listed = {t["unit"]: t for t in json.loads(r.stdout or "[]")}
    out = []
    for name in names:
        # One `show` per timer: TimersCalendar repeats, so the blocks cannot be keyed by Id.
        r = manager.systemctl("show", "--timestamp=unix", "--property=Unit",
                              "--property=UnitFileState", "--property=ActiveState",
                              "--property=SubState", "--property=TimersCalendar", "--", name)
        if r.returncode != 0:
            raise systemd.SystemdError(f"systemctl {manager.flag}show {name} failed: "
                                       f"{r.stderr.strip()}")
        props = systemd.parse_show(r.stdout)
        p = props[0] if props else {}
        service = p.get("Unit") or None
        runs = result = None
        if service:
            sp = manager.show([service], ["ExecStart", "Result", "ExecMainStatus"]).get(service, {})
            runs = _argv(sp.get("ExecStart", ""))
            result = sp.get("Result") or None
            if result == "exit-code" and sp.get("ExecMainStatus"):
                result += f" {sp['ExecMainStatus']}"
        t = listed.get(name, {})
        out.append(TimerInfo(
            timer=name, service=service, runs=runs, calendar=_calendar(r.stdout),
            enabled=p.get("UnitFileState", "?"),
            state=f"{p.get('ActiveState', '?')}/{p.get('SubState', '?')}",
            next_usec=int(t["next"]) if t.get("next") else None,
            last_usec=int(t["last"]) if t.get("last") else None,
            last_result=result if t.get("last") else None))
    return out


def _short(runs: str | None) -> str:
    """``/long/venv/bin/trading job predict`` -> ``trading job predict`` for the table."""
    if not runs:
        return "-"
    head, _, rest = runs.partition(" ")
    return " ".join([head.rsplit("/", 1)[-1], rest]).strip()


def schedule(as_json: bool = common.JsonOption) -> None:
    """Each timer, what it runs, and its last and next run in Sydney time and UTC."""
    from trading.ops import systemd

    manager = common.installed_manager(
        as_json, f"no timer runs the jobs. Schedule them with cron instead, e.g. "
        f"`{CRON_LINE}` (the job checks ASX hours and holidays itself, and runs the handlers "
        "in-process)", {"timers": []})
    try:
        timers = read_timers(manager)
    except (systemd.SystemdError, OSError, ValueError, subprocess.TimeoutExpired) as exc:
        raise common.fail(f"cannot read systemd's timers: {exc}")
    if as_json:
        common.print_json({"systemd": manager.scope, "installed": True,
                           "timers": [t.as_json() for t in timers]})
        return
    if not timers:
        print(f"no trading timers installed in the {manager.scope} manager; re-run ./install.sh")
        raise typer.Exit(common.EXIT_FAILURE)
    common.table(f"timers ({manager.scope} manager; times in Sydney / UTC)",
                 ["timer", "runs", "OnCalendar (Sydney)", "next run", "last run"],
                 [[t.timer.removesuffix(".timer")
                   + ("" if t.enabled == "enabled" else f" ({t.enabled})"),
                   _short(t.runs), "\n".join(c.removesuffix(f" {SYDNEY}") for c in t.calendar),
                   _fmt(t.next_usec),
                   _fmt(t.last_usec) + (f" ({t.last_result})" if t.last_result else "")]
                  for t in timers])
