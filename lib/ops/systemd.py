"""What systemd knows about the installed services, read through ``systemctl show``.

``trading status`` needs the truth from the manager that runs the units, not a guess from
files: whether each socket listens or has failed (and why, in words), whether its handler is
running, with which PID and how much memory, and when each timer fires next. The install
decides which manager that is: ``install.sh --user`` puts the units in the user's manager,
a system install in the system manager; :func:`detect` finds out which, by where the
``trading.target`` unit file is, and whether that manager is reachable.

Reading (``show``, ``list-unit-files``) is safe to call from any command. Changing units is
:func:`start`, :func:`stop` and :func:`restart` (``trading start|stop|restart``), each of which
reads the state first, changes only what differs, and returns one :class:`Change` per unit it
changed. :func:`stopped_reason` tells the CLI when systemd holds a service stopped, so it says
so instead of running the handler in-process.

The module is long because it is the one place that talks to ``systemctl``: the reading half
(status, schedule) and the changing half (start, stop, restart) share the :class:`Manager`,
the ``show`` parser and the words for each state, and splitting them would split those too.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from trading.errors import ControlError, NotPermitted

logger = logging.getLogger(__name__)

TIMEOUT = 10.0
# Stopping a handler drains its in-flight requests for up to TimeoutStopSec=35s.
CHANGE_TIMEOUT = 60.0
# PID 1 makes this directory at boot: without it no system manager runs (a container, a CI VM).
BOOTED = Path("/run/systemd/system")
# systemd prints this for an unset 64-bit value (e.g. MemoryCurrent without accounting).
_UNSET = {"", "[not set]", "18446744073709551615", "infinity"}

SOCKET_PROPS = ["Id", "LoadState", "ActiveState", "SubState", "Result", "Listen"]
SERVICE_PROPS = ["Id", "LoadState", "ActiveState", "SubState", "Result", "MainPID",
                 "MemoryCurrent", "NRestarts", "ExecMainStatus", "ExecMainCode"]
TIMER_PROPS = ["Id", "LoadState", "ActiveState", "SubState", "Result", "Unit",
               "NextElapseUSecRealtime", "LastTriggerUSec"]


@dataclass(frozen=True)
class Manager:
    """A systemd manager: ``scope`` is ``"system"`` or ``"user"``."""

    scope: str
    unit_dir: Path

    @property
    def systemctl_args(self) -> list[str]:
        return ["systemctl", "--user"] if self.scope == "user" else ["systemctl"]

    @property
    def flag(self) -> str:
        """What to put after ``systemctl`` in advice printed to people."""
        return "--user " if self.scope == "user" else ""

    def systemctl(self, *args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.systemctl_args, *args], capture_output=True, text=True,
                              timeout=timeout, env=_c_locale())

    def booted(self) -> bool:
        """False for the system manager of a machine not booted with systemd (cheap: a stat)."""
        return self.scope != "system" or BOOTED.is_dir()

    def running(self) -> bool:
        """True when this manager answers (a booted system, or a live user manager)."""
        if shutil.which("systemctl") is None:
            return False
        if not self.booted():
            return False  # not booted with systemd (a container, a CI VM)
        try:
            r = self.systemctl("show", "--property=Version", "--value")
        except (OSError, subprocess.TimeoutExpired):
            return False
        return r.returncode == 0 and bool(r.stdout.strip())

    def installed(self) -> bool:
        return (self.unit_dir / "trading.target").exists()

    def show(self, units: Iterable[str], props: Iterable[str]) -> dict[str, dict[str, str]]:
        """``systemctl show`` of several units, keyed by unit name."""
        units = list(units)
        if not units:
            return {}
        r = self.systemctl("show", *[f"--property={p}" for p in props], "--", *units)
        if r.returncode != 0:
            raise SystemdError(f"systemctl {self.flag}show failed: {r.stderr.strip()}")
        blocks = parse_show(r.stdout)
        return {b.get("Id", u): b for u, b in zip(units, blocks)}

    def change(self, verb: str, *units: str) -> None:
        """``systemctl [--user] VERB UNITS...``, waiting for the jobs to finish.

        ``--no-ask-password``: a refusal is :class:`NotPermitted` at once, never a polkit
        prompt; any other failure is :class:`ControlError` with systemctl's own words.
        """
        argv = ["--no-ask-password", verb, *(["--", *units] if units else [])]
        try:
            r = self.systemctl(*argv, timeout=CHANGE_TIMEOUT)
        except subprocess.TimeoutExpired as exc:
            raise ControlError(f"systemctl {self.flag}{verb} did not finish within "
                               f"{CHANGE_TIMEOUT:g}s") from exc
        if r.returncode == 0:
            return
        said = next((line.strip() for line in r.stderr.splitlines() if line.strip()),
                    f"exit status {r.returncode}")
        if any(word in said.lower() for word in _DENIED):
            raise NotPermitted(f"the {self.scope} manager refused: {said}")
        raise ControlError(f"systemctl {self.flag}{verb} failed: {said}")

    def unit_files(self, pattern: str) -> list[str]:
        """Installed unit files matching ``pattern`` (e.g. ``trading-*.timer``)."""
        r = self.systemctl("list-unit-files", "--no-legend", "--plain", "--", pattern)
        if r.returncode != 0:
            return []
        return sorted(line.split()[0] for line in r.stdout.splitlines() if line.strip())


class SystemdError(RuntimeError):
    """systemctl answered with an error we cannot interpret."""


# How systemctl says "not you" (systemd 252): polkit's refusal, or no polkit on the bus.
_DENIED = ("access denied", "interactive authentication required", "permission denied",
           "operation not permitted")


def _c_locale() -> dict[str, str]:
    # Untranslated output, and no pager or colour whatever the caller's terminal says.
    return {**os.environ, "LC_ALL": "C", "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0"}


def user_unit_dir(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME", "~")).expanduser() / ".config")
    return Path(base) / "systemd" / "user"


SYSTEM_UNIT_DIR = Path("/etc/systemd/system")


def managers(environ: Mapping[str, str] | None = None) -> list[Manager]:
    """The two candidates, the user manager first (a --user install is the more specific)."""
    return [Manager("user", user_unit_dir(environ)), Manager("system", SYSTEM_UNIT_DIR)]


def detect(environ: Mapping[str, str] | None = None) -> tuple[Manager | None, bool]:
    """``(manager, installed)``: the manager holding the install, else any running one.

    ``(None, False)`` means no systemd answers here: the CLI runs handlers in-process.
    """
    candidates = managers(environ)
    for m in candidates:
        if m.installed():
            return (m, True) if m.running() else (None, True)
    for m in reversed(candidates):  # not installed: prefer to name the system manager
        if m.running():
            return m, False
    return None, False


def parse_show(text: str) -> list[dict[str, str]]:
    """Split ``systemctl show`` output into one dict per unit (blocks end at a blank line)."""
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
                current = {}
            continue
        key, sep, value = line.partition("=")
        if sep:
            current[key] = value
    if current:
        blocks.append(current)
    return blocks


def process_rss(pid: int) -> int | None:
    """The resident memory of ``pid`` in bytes (``VmRSS``), or None when it is gone.

    The fallback for a manager that does no memory accounting (cgroup v1 without a memory
    hierarchy delegated to it, as some VMs and containers have): systemd then reports no
    MemoryCurrent, yet the handler's own resident set is still the figure people want.
    """
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _int_or_none(value: str | None) -> int | None:
    if value is None or value.strip() in _UNSET:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def listen_path(listen: str) -> str | None:
    """``/run/trading/x.sock (Stream)`` -> ``/run/trading/x.sock``."""
    if not listen:
        return None
    return listen.split(" (", 1)[0].strip() or None


@dataclass
class ServiceRow:
    service: str
    socket: str          # words: listening, failed (...; run ...), stopped (...), not installed
    socket_state: str    # systemd's ActiveState/SubState of the socket unit
    state: str           # active, inactive, failed (...), starting
    service_state: str   # systemd's ActiveState/SubState of the service unit
    pid: int | None
    memory_bytes: int | None
    memory_source: str | None  # "cgroup" (systemd's MemoryCurrent) or "rss" (the PID's VmRSS)
    socket_path: str | None
    restarts: int | None
    ok: bool

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TimerRow:
    timer: str
    unit: str | None
    state: str
    next_run: str | None
    last_run: str | None
    # systemd's LastTriggerUSec when no run is known: a Persistent= timer's stamp file is
    # written when the timer first starts, so a fresh install has one though nothing ran
    stamp_only: str | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def describe_socket(m: Manager, unit: str, p: Mapping[str, str]) -> tuple[str, bool]:
    """The socket's state in words, with the command that fixes a failure; and whether ok."""
    load, active, result = p.get("LoadState"), p.get("ActiveState"), p.get("Result", "")
    if load in (None, "not-found"):
        return "not installed", False
    if active == "active":
        return "listening", True
    if active == "failed":
        reset = f"run systemctl {m.flag}reset-failed {unit}"
        if result == "service-start-limit-hit":
            # The service's own start counter must be reset too, and the socket started again:
            # resetting the socket alone leaves it stopped, and the next start trips the limit.
            service = unit.removesuffix(".socket") + ".service"
            return (f"start limit hit; {reset} {service} && "
                    f"systemctl {m.flag}start {unit}"), False
        if result == "trigger-limit-hit":
            return (f"trigger limit hit (started too often); {reset} && "
                    f"systemctl {m.flag}start {unit}"), False
        return f"failed ({result or 'unknown'}); {reset}", False
    if active in ("activating", "deactivating"):
        return active, False
    return "stopped; run trading start", False


def describe_service(p: Mapping[str, str]) -> str:
    active, sub = p.get("ActiveState", "unknown"), p.get("SubState", "")
    if active == "active":
        return "active"
    if active == "inactive":
        return "inactive"
    if active == "failed":
        result = p.get("Result", "")
        status = p.get("ExecMainStatus")
        code = p.get("ExecMainCode")
        detail = result or "failed"
        if status and status != "0":
            detail += f", {'signal' if code == '2' else 'status'} {status}"
        return f"failed ({detail})"
    if active == "activating":
        return "starting"
    if active == "deactivating":
        return "stopping"
    return f"{active} ({sub})" if sub else active


def service_rows(m: Manager, names: Iterable[str]) -> list[ServiceRow]:
    names = list(names)
    sockets = m.show([f"trading-{n}.socket" for n in names], SOCKET_PROPS)
    services = m.show([f"trading-{n}.service" for n in names], SERVICE_PROPS)
    rows = []
    for n in names:
        sunit, vunit = f"trading-{n}.socket", f"trading-{n}.service"
        sp, vp = sockets.get(sunit, {}), services.get(vunit, {})
        words, ok = describe_socket(m, sunit, sp)
        path = listen_path(sp.get("Listen", ""))
        if ok and path and path.startswith("/") and not _is_socket(path):
            # systemd still holds the listening socket, but nobody can reach it by its path.
            words, ok = (f"socket file {path} is missing; run systemctl {m.flag}restart "
                         f"{sunit}"), False
        pid = _int_or_none(vp.get("MainPID"))
        memory, source = (_int_or_none(vp.get("MemoryCurrent")), "cgroup") if pid else (None, None)
        if pid and memory is None:
            memory, source = process_rss(pid), "rss"
        rows.append(ServiceRow(
            service=n, socket=words,
            socket_state=f"{sp.get('ActiveState', '?')}/{sp.get('SubState', '?')}",
            state=describe_service(vp),
            service_state=f"{vp.get('ActiveState', '?')}/{vp.get('SubState', '?')}",
            pid=pid or None,
            memory_bytes=memory, memory_source=source if memory is not None else None,
            socket_path=path,
            restarts=_int_or_none(vp.get("NRestarts")),
            ok=ok and not vp.get("ActiveState") == "failed"))
    return rows


def _is_socket(path: str) -> bool:
    import stat

    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def timer_rows(m: Manager) -> list[TimerRow]:
    """The trading timers. A last run is one the timer's service really started
    (``ExecMainStartTimestamp``, since the manager started), not systemd's
    ``LastTriggerUSec`` alone: for a ``Persistent=`` timer that is the stamp file's time,
    which a fresh install has before anything ran (then ``stamp_only``)."""
    timers = m.unit_files("trading*.timer")
    shown = m.show(timers, TIMER_PROPS)
    units = sorted({p.get("Unit") for p in shown.values() if p.get("Unit")})
    started = m.show(units, ["Id", "ExecMainStartTimestamp"]) if units else {}
    rows = []
    for t, p in shown.items():
        unit = p.get("Unit") or None
        ran = (started.get(unit) or {}).get("ExecMainStartTimestamp", "")
        ran = None if ran in _UNSET | {"n/a", "0"} else ran
        trigger = p.get("LastTriggerUSec", "")
        trigger = None if trigger in _UNSET | {"n/a"} else trigger
        rows.append(TimerRow(
            timer=t, unit=unit,
            state=f"{p.get('ActiveState', '?')}/{p.get('SubState', '?')}",
            next_run=None if p.get("NextElapseUSecRealtime", "") in _UNSET
            else p["NextElapseUSecRealtime"],
            last_run=ran, stamp_only=None if ran else trigger))
    return rows


# -- changing units: trading start, stop, restart ------------------------------------------
# Under socket activation the socket unit is what "running" means to a client: a listening
# socket answers (starting its handler on demand), a stopped one does not. So start and stop
# act on the sockets (and the timers, which would otherwise wake stopped services), stop also
# ends any running handler, and restart ends only the handlers: the sockets keep listening, a
# request arriving meanwhile waits in the backlog and systemd starts the new code for it.

CONTROL_PROPS = ["Id", "LoadState", "ActiveState", "SubState", "Result", "MainPID",
                 "NeedDaemonReload", "Listen"]
_UP = {"active", "activating", "deactivating", "reloading"}  # something to stop


@dataclass
class Change:
    """One unit changed by start, stop or restart, with systemd's state before and after."""

    unit: str
    change: str          # started, stopped, reloaded
    before: str          # ActiveState/SubState
    after: str
    pid: int | None      # the handler process a stop ended

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _state(p: Mapping[str, str]) -> str:
    return f"{p.get('ActiveState', '?')}/{p.get('SubState', '?')}"


def _show_installed(m: Manager, units: list[str]) -> dict[str, dict[str, str]]:
    shown = m.show(units, CONTROL_PROPS)
    missing = [u for u in units if shown.get(u, {}).get("LoadState") != "loaded"]
    if missing:
        raise ControlError(f"{', '.join(missing)} not installed in the {m.scope} manager; "
                           "run ./install.sh" + (" --user" if m.scope == "user" else ""))
    return shown


def _changed(m: Manager, before: Mapping[str, Mapping[str, str]], units: list[str],
             change: str) -> list[Change]:
    after = m.show(units, CONTROL_PROPS) if units else {}
    return [Change(unit=u, change=change, before=_state(before[u]), after=_state(after.get(u, {})),
                   pid=_int_or_none(before[u].get("MainPID")) or None) for u in units]


def _timers(m: Manager, timers: bool) -> list[str]:
    return m.unit_files("trading*.timer") if timers else []


def start(m: Manager, names: Iterable[str], *, timers: bool = True) -> list[Change]:
    """Start the sockets of ``names`` (and the timers): they answer on demand again.

    No handler starts here. A failed socket (a crash loop's start limit) is reset first, with
    its service's start counter, or starting it again would trip the limit at once. A socket
    unit that is active but whose file is gone (deleted by hand: no client can connect) is
    made again: its handler, which only existing connections could reach, stops first.
    """
    units = [f"trading-{n}.socket" for n in names] + _timers(m, timers)
    before = _show_installed(m, units)
    gone = [u for u in units if u.endswith(".socket") and before[u].get("ActiveState") == "active"
            and _file_gone(before[u].get("Listen", ""))]
    if gone:
        m.change("stop", *gone, *[u.removesuffix(".socket") + ".service" for u in gone])
        m.change("start", *gone)
    todo = [u for u in units if before[u].get("ActiveState") != "active"]
    failed = [u for u in todo if before[u].get("ActiveState") == "failed"]
    if failed:
        m.change("reset-failed", *failed, *[u.removesuffix(".socket") + ".service"
                                            for u in failed if u.endswith(".socket")])
    if todo:
        m.change("start", *todo)
    return _changed(m, before, gone, "recreated") + _changed(m, before, todo, "started")


def _file_gone(listen: str) -> bool:
    """Whether a socket unit's Unix socket file is missing (a TCP address never is)."""
    path = listen_path(listen)
    return bool(path) and path.startswith("/") and not os.path.exists(path)


def stop(m: Manager, names: Iterable[str], *, timers: bool = True) -> list[Change]:
    """Stop the timers, the sockets of ``names`` and any handler running: nothing answers.

    The timers go first, so no scheduled job wakes a service on its way down; a running
    handler drains its in-flight requests (up to TimeoutStopSec) before it exits.
    """
    names = list(names)
    units = (_timers(m, timers) + [f"trading-{n}.socket" for n in names]
             + [f"trading-{n}.service" for n in names])
    before = _show_installed(m, units)
    todo = [u for u in units if before[u].get("ActiveState") in _UP]
    if todo:
        m.change("stop", *todo)
    return _changed(m, before, todo, "stopped")


def restart(m: Manager, names: Iterable[str], *, timers: bool = True) -> list[Change]:
    """Make the next request of ``names`` run the current code and configuration.

    Reloads the unit files if any changed on disk, stops the running handlers while their
    sockets keep listening (a request arriving meanwhile waits in the backlog and is served
    by a new process, not refused), then does what :func:`start` does for any socket or timer
    that is not running, so a restart after ``stop`` brings the services back too.
    """
    names = list(names)
    services = [f"trading-{n}.service" for n in names]
    units = [f"trading-{n}.socket" for n in names] + services + _timers(m, timers)
    before = _show_installed(m, units)
    changes = []
    if any(before[u].get("NeedDaemonReload") == "yes" for u in units):
        m.change("daemon-reload")
        changes.append(Change(unit="unit files", change="reloaded", before="changed on disk",
                              after="loaded", pid=None))
    running = [u for u in services if before[u].get("ActiveState") in _UP]
    if running:
        m.change("stop", *running)
    return changes + _changed(m, before, running, "stopped") + start(m, names, timers=timers)


def stopped_reason(service: str, environ: Mapping[str, str] | None = None) -> str | None:
    """Why ``service`` should not quietly run in-process, or None when it may.

    It may not when systemd holds the install and its socket unit is stopped (``trading
    stop``: maintenance) or has failed: the socket file is gone, yet running the handler
    inside the command would hide exactly what the operator did or what went wrong. Where
    nothing is installed this costs two stat calls; where something is, one ``systemctl
    show``. A manager that does not answer is no reason: the handler runs in-process.
    """
    m = next((m for m in managers(environ) if m.installed()), None)
    if m is None or not m.booted():
        return None
    unit = f"trading-{service}.socket"
    try:
        p = m.show([unit], SOCKET_PROPS).get(unit, {})
    except (SystemdError, OSError, subprocess.TimeoutExpired):
        return None
    if p.get("LoadState") != "loaded":
        return None
    active = p.get("ActiveState")
    if active == "inactive":
        why = f"{service} is stopped ({unit} is not listening in the {m.scope} manager)"
        fix = f"run `trading start {service}`"
    elif active == "failed":
        why = f"{service}'s socket has failed ({p.get('Result') or 'unknown'})"
        fix = "see `trading status`"
    else:
        return None
    return f"{why}: {fix}, or `trading --in-process ...` to run it inside the command"
