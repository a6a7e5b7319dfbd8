"""What systemd knows about the installed services, read through ``systemctl show``.

``trading status`` needs the truth from the manager that runs the units, not a guess from
files: whether each socket listens or has failed (and why, in words), whether its handler is
running, with which PID and how much memory, and when each timer fires next. The install
decides which manager that is: ``install.sh --user`` puts the units in the user's manager,
a system install in the system manager; :func:`detect` finds out which, by where the
``trading.target`` unit file is, and whether that manager is reachable.

Nothing here starts or changes a unit; it only runs ``systemctl [--user] show`` and
``list-unit-files`` with a timeout, so it is safe to call from any command.
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

logger = logging.getLogger(__name__)

TIMEOUT = 10.0
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

    def systemctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.systemctl_args, *args], capture_output=True, text=True,
                              timeout=TIMEOUT, env=_c_locale())

    def running(self) -> bool:
        """True when this manager answers (a booted system, or a live user manager)."""
        if shutil.which("systemctl") is None:
            return False
        if self.scope == "system" and not os.path.isdir("/run/systemd/system"):
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

    def unit_files(self, pattern: str) -> list[str]:
        """Installed unit files matching ``pattern`` (e.g. ``trading-*.timer``)."""
        r = self.systemctl("list-unit-files", "--no-legend", "--plain", "--", pattern)
        if r.returncode != 0:
            return []
        return sorted(line.split()[0] for line in r.stdout.splitlines() if line.strip())


class SystemdError(RuntimeError):
    """systemctl answered with an error we cannot interpret."""


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
    socket: str          # words: listening, failed (...; run ...), not listening, not installed
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
    return f"not listening; run systemctl {m.flag}start trading.target", False


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
    timers = m.unit_files("trading*.timer")
    rows = []
    for t, p in m.show(timers, TIMER_PROPS).items():
        rows.append(TimerRow(
            timer=t, unit=p.get("Unit") or None,
            state=f"{p.get('ActiveState', '?')}/{p.get('SubState', '?')}",
            next_run=None if p.get("NextElapseUSecRealtime", "") in _UNSET
            else p["NextElapseUSecRealtime"],
            last_run=None if p.get("LastTriggerUSec", "") in _UNSET | {"n/a"}
            else p["LastTriggerUSec"]))
    return rows
