"""A real systemd user manager in a private mount namespace, with trading-services installed.

The development and CI machines have the systemd package but not systemd as PID 1. A user
manager still runs there: ``unshare -m`` gives it
a private mount namespace where a tmpfs over /run/systemd holds the ``/run/systemd/system``
marker it insists on; the host is untouched. Clients need no namespace: ``systemctl --user``
finds the manager through ``$XDG_RUNTIME_DIR/systemd/private``.

:class:`UserManager` is the plain helper (start, ``systemctl``, ``show``, logs, stop) and
:func:`install` runs ``install.sh --user`` into the sandbox's private HOME. The pytest
fixtures at the bottom (``user_manager``, ``installed``, ``sd``) are registered for every test
module by tests/conftest.py (``pytest_plugins``): a test asks for them by name, and carries
``pytest.mark.systemd``. Modules import only the plain names they use (``UserManager``,
``install``, ``sock``).

When the sandbox cannot start, the fixtures skip with the reason, except under ``CI=true``,
where they fail: CI must run these tests. journald does not run in the sandbox, so the
services' logs are the manager's console output: :meth:`UserManager.logs`.

Why the HOME is not under /tmp: the units set ``PrivateTmp=yes``, so a venv under /tmp would
be invisible to the handlers. The sandbox lives under /home (like a real user's HOME, which
also exercises ``ProtectHome=read-only``), or ``$TRADING_SANDBOX_BASE``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
INSTALL_SH = REPO / "install.sh"
SYSTEMD = "/lib/systemd/systemd"

# Started inside the new mount namespace: hide the host's /run/systemd behind a tmpfs holding
# the marker systemd --user checks ("booted with systemd") and the inaccessible nodes PID 1
# would have made at boot (a root user manager mounts them over paths for
# ProtectKernelTunables=/ProtectKernelLogs= and InaccessiblePaths=, the socket node over a
# socket; without them those services fail 226/NAMESPACE), then become the manager.
_MANAGER_SCRIPT = (
    "mount -t tmpfs tmpfs /run/systemd && mkdir -p /run/systemd/system && "
    "mkdir -p /run/systemd/inaccessible && cd /run/systemd/inaccessible && "
    "mknod -m 0 chr c 0 0 && mknod -m 0 blk b 0 0 && mkdir -m 0 dir && "
    "install -m 0 /dev/null reg && mkfifo -m 0 fifo && "
    f"{sys.executable} -c 'import os, socket; socket.socket(socket.AF_UNIX).bind(\"sock\"); "
    "os.chmod(\"sock\", 0)' && cd / && "
    f"exec {SYSTEMD} --user --log-target=console --log-level=info"
)


def _own_cgroups(name: str) -> list[Path]:
    """A fresh cgroup per sandbox, below the caller's, in each hierarchy systemd tracks with.

    A user manager puts its units below its own cgroup (``.../app.slice/trading-x.service``).
    Two sandboxes started from the same cgroup would share those paths: one manager then
    sees the other's handler in "its" service cgroup, waits TimeoutStopSec for it to empty,
    and SIGTERMs it (seen when two test runs overlapped: 37 s without a handler).
    """
    made = []
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            root = Path("/sys/fs/cgroup/unified")
            if not root.is_dir():
                root = Path("/sys/fs/cgroup")
        elif controllers == "cpuset":
            continue  # a v1 cpuset child takes no process until cpus and mems are set
        else:  # v1 (hybrid mode): memory, pids, ... too, or MemoryCurrent= goes missing
            root = Path("/sys/fs/cgroup") / controllers.removeprefix("name=")
            if not root.is_dir():
                continue
        cg = root / path.lstrip("/") / name
        try:
            cg.mkdir()
        except OSError:
            continue  # not writable here: the manager shares its parent's cgroup
        made.append(cg)
    return made


def _remove_cgroup(cg: Path) -> None:
    """rmdir a cgroup tree bottom-up (cgroupfs refuses rm -r); best effort."""
    if not cg.is_dir():
        return
    for child in sorted((p for p in cg.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        try:
            child.rmdir()
        except OSError:
            pass
    try:
        cg.rmdir()
    except OSError:
        pass


class SandboxUnavailable(RuntimeError):
    """The user manager could not be started here (no unshare, not root, no systemd)."""


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sandbox_base() -> Path:
    base = os.environ.get("TRADING_SANDBOX_BASE")
    if base:
        return Path(base)
    for candidate in ("/home", "/var/lib"):
        if os.access(candidate, os.W_OK):
            return Path(candidate)
    raise SandboxUnavailable("no writable base directory outside /tmp (set TRADING_SANDBOX_BASE)")


class UserManager:
    """A ``systemd --user`` in a private mount namespace, rooted in a scratch directory.

    ``env`` is the environment every client command must use (HOME, XDG_RUNTIME_DIR, a clean
    PATH); it also becomes the manager's environment block, which the services inherit, so it
    carries no TRADING_* variable from the caller.
    """

    def __init__(self, root: Path | None = None) -> None:
        self._own_root = root is None
        self.root = root or Path(tempfile.mkdtemp(prefix="trading-sandbox-", dir=_sandbox_base()))
        self.home = self.root / "home"
        self.runtime_dir = self.root / "run"
        self.log_path = self.root / "manager.log"
        self.proc: subprocess.Popen | None = None
        self.env = {
            "HOME": str(self.home),
            "USER": os.environ.get("USER", "root"),
            "LOGNAME": os.environ.get("USER", "root"),
            "XDG_RUNTIME_DIR": str(self.runtime_dir),
            "PATH": f"{self.home}/.local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
            # The CLI runs as root here, and root's default socket directory is /run/trading:
            # point it at the user manager's sockets, and never fall back to in-process.
            "TRADING_RUNTIME_DIR": str(self.runtime_dir / "trading"),
            "TRADING_IN_PROCESS": "never",
            # Let the rules call BUY and SELL, as tests/conftest.py does for every test (the
            # shipped default withholds them; its own tests say so).
            "TRADING_DIRECTIONAL_CALLS": "true",
            # install.sh renders the dashboard's socket from this: a free port of its own, so
            # sandboxes (and a real install on 8787) never collide.
            "TRADING_WEB_LISTEN": f"127.0.0.1:{_free_port()}",
        }

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, timeout: float = 20.0) -> UserManager:
        for tool in ("unshare", "systemctl", "systemd-analyze"):
            if shutil.which(tool) is None:
                raise SandboxUnavailable(f"{tool} not found (install the systemd package)")
        if not os.path.exists(SYSTEMD):
            raise SandboxUnavailable(f"{SYSTEMD} not found (install the systemd package)")
        if os.geteuid() != 0:
            raise SandboxUnavailable("needs root to unshare a mount namespace and mount a tmpfs")
        self.home.mkdir(parents=True, exist_ok=True)
        self.runtime_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        # No journald here: the services' output goes to the manager's stdout, our log file.
        conf = self.home / ".config/systemd/user.conf"
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text("[Manager]\nDefaultStandardOutput=inherit\nDefaultStandardError=inherit\n")
        self.cgroups = _own_cgroups(self.root.name)
        enter = "".join(f"echo $$ > {cg}/cgroup.procs && " for cg in self.cgroups)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "sh", "-c", enter + _MANAGER_SCRIPT],
            env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        private = self.runtime_dir / "systemd" / "private"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SandboxUnavailable(
                    f"systemd --user exited with {self.proc.returncode}: {self.logs()[-2000:]}")
            if private.exists():
                # (`is-system-running` says "offline": it checks the host, not this manager)
                state = self.systemctl("show", "--property=SystemState", "--value",
                                       check=False).stdout.strip()
                if state in ("running", "degraded"):
                    return self
            time.sleep(0.05)
        self.stop()
        raise SandboxUnavailable(f"systemd --user not ready after {timeout}s: {self.logs()[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.systemctl("exit", check=False, timeout=10)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        for cg in getattr(self, "cgroups", []):
            _remove_cgroup(cg)
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> UserManager:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    # -- talking to it -----------------------------------------------------------------------
    def run(self, *argv: str, check: bool = True, timeout: float = 60.0,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run a command with the sandbox's environment (a client of this manager)."""
        result = subprocess.run(list(argv), env={**self.env, **(env or {})}, capture_output=True,
                                text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited {result.returncode}:\n"
                                 f"{result.stdout}{result.stderr}")
        return result

    def systemctl(self, *args: str, check: bool = True,
                  timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return self.run("systemctl", "--user", *args, check=check, timeout=timeout)

    def show(self, unit: str, *props: str) -> dict[str, str]:
        """``systemctl --user show UNIT -p ...`` as a dict."""
        args = ["show", unit] + [f"--property={p}" for p in props]
        out = self.systemctl(*args).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def main_pid(self, service: str) -> int:
        return int(self.show(f"trading-{service}.service", "MainPID")["MainPID"])

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def trading(self, *args: str, check: bool = True,
                timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run the installed ``trading`` command (not the checkout's)."""
        return self.run(str(self.home / ".local/bin/trading"), *args, check=check, timeout=timeout)

    def drop_in(self, unit: str, name: str, text: str) -> Path:
        """Write a drop-in for ``unit`` (test-only settings; never an edit of the unit) and reload."""
        d = self.home / ".config/systemd/user" / f"{unit}.d"
        d.mkdir(parents=True, exist_ok=True)
        path = d / f"{name}.conf"
        path.write_text(text)
        self.systemctl("daemon-reload")
        return path

    def slow_drop_in(self, service: str) -> Path:
        """Serve ``service``'s socket with the test-only slow handler (tests/support/
        slow_service.py), by drop-in; the shipped unit and handlers stay untouched. Returns the
        drop-in, for :meth:`remove_drop_in`."""
        lib = self.root / "testlib"
        shutil.copytree(REPO / "tests" / "support", lib / "support", dirs_exist_ok=True)
        return self.drop_in(f"trading-{service}.service", "test-slow", (
            "[Service]\nExecStart=\n"
            f"ExecStart={self.venv}/bin/python -m support.slow_service\n"
            f"Environment=PYTHONPATH={lib}\n"))

    def remove_drop_in(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        self.systemctl("daemon-reload")

    def set_idle_exit(self, seconds: float, services: list[str] | None = None) -> None:
        """A short idle exit for tests, by drop-in (the shipped units stay as installed)."""
        from trading.handlers import SERVICES

        for name in services or list(SERVICES):
            d = self.home / ".config/systemd/user" / f"trading-{name}.service.d"
            d.mkdir(parents=True, exist_ok=True)
            (d / "test-idle-exit.conf").write_text(
                f"[Service]\nEnvironment=TRADING_IDLE_EXIT={seconds:g}\n")
        self.systemctl("daemon-reload")

    @property
    def unit_dir(self) -> Path:
        return self.home / ".config/systemd/user"

    @property
    def venv(self) -> Path:
        return self.home / ".local/share/trading/venv"

    def handler_pids(self, service: str) -> list[int]:
        """PIDs of this install's handler processes for ``service``, found in /proc.

        Only processes started from the sandbox's venv count, so handlers that other tests
        run from the development venv do not.
        """
        from trading.handlers import SOCKET_SERVICES

        module = SOCKET_SERVICES[service]
        prefix = str(self.venv)
        script = f"{prefix}/bin/trading-{service}"  # what the unit runs (python -m: by hand)
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            args = [a.decode(errors="replace") for a in argv if a]
            if len(args) >= 2 and args[0].startswith(prefix) and (
                    args[1] == script or args[1:3] == ["-m", module]):
                pids.append(int(entry.name))
        return sorted(pids)


def sock(manager: UserManager, name: str) -> Path:
    """The socket the installed units listen on for service ``name``."""
    return manager.runtime_dir / "trading" / f"{name}.sock"


QUIET_TIMERS = "trading-.timer.d/sandbox-quiet.conf"


def install(manager: UserManager, *extra: str, deps_from: Path | None = None,
            timers: bool = False, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
    """``install.sh --user`` into the sandbox's HOME.

    ``deps_from`` (default: the virtualenv running the tests) lends the dependencies, so the
    install takes seconds and needs no network; the project itself is a regular install in
    ``~/.local/share/trading/venv``, independent of the checkout.

    Unless ``timers`` is true, a prefix drop-in (``trading-.timer.d/``, which applies to every
    trading-*.timer) first moves every timer's schedule to 2099, so a scheduled job (e.g.
    predictions in ASX hours) cannot start handlers in the middle of a test or reach Yahoo.
    The timers are still installed, enabled and started; a timer test removes the drop-in
    (``manager.remove_drop_in(manager.unit_dir / QUIET_TIMERS)``) or passes ``timers=True``.
    """
    quiet = manager.unit_dir / QUIET_TIMERS
    if timers:
        quiet.unlink(missing_ok=True)
    else:
        quiet.parent.mkdir(parents=True, exist_ok=True)
        quiet.write_text("# sandbox only: no scheduled job fires during the tests\n"
                         "[Timer]\nOnCalendar=\nOnCalendar=2099-01-01 00:00:00 UTC\n"
                         "Persistent=false\n")
    return _install(manager, *extra, deps_from=deps_from, timeout=timeout)


def _install(manager: UserManager, *extra: str, deps_from: Path | None,
             timeout: float) -> subprocess.CompletedProcess[str]:
    donor = (deps_from or Path(sys.prefix)).resolve()
    if str(donor).startswith(("/tmp/", "/var/tmp/")):
        # The units' PrivateTmp=yes would hide a donor venv under /tmp from the handlers
        # (a checkout under /tmp); only then, and only here, the sandbox lifts it for all
        # trading-* services with a prefix drop-in. The shipped units are unchanged.
        d = manager.home / ".config/systemd/user/trading-.service.d"
        d.mkdir(parents=True, exist_ok=True)
        (d / "sandbox-donor-in-tmp.conf").write_text("[Service]\nPrivateTmp=no\n")
    return manager.run(str(INSTALL_SH), "--user", "--deps-from", str(donor), *extra,
                       timeout=timeout)


def unavailable(reason: str) -> None:
    """Skip locally; fail under CI=true, where these tests must run."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"systemd sandbox unavailable under CI: {reason}", pytrace=False)
    pytest.skip(f"systemd sandbox unavailable: {reason}")


def start_manager() -> UserManager:
    try:
        return UserManager().start()
    except SandboxUnavailable as exc:
        unavailable(str(exc))
        raise  # not reached


@pytest.fixture(scope="module")
def user_manager() -> Iterator[UserManager]:
    """A running user manager with nothing installed; one per test module."""
    manager = start_manager()
    try:
        yield manager
    finally:
        manager.cleanup()


@pytest.fixture(scope="module")
def installed(user_manager: UserManager) -> UserManager:
    """The user manager with ``install.sh --user`` done and the sockets listening."""
    result = install(user_manager)
    user_manager.install_output = result.stdout + result.stderr  # type: ignore[attr-defined]
    return user_manager


@pytest.fixture(scope="module")
def sd(installed: UserManager) -> UserManager:
    """The installed manager, by the short name the tests use. A module whose tests all need
    the same drop-ins (a short idle exit) overrides it."""
    return installed
