"""``trading start``, ``stop`` and ``restart``: the management script's verbs, under socket
activation.

systemd owns each service's socket and starts the handler on the first connection, so the
verbs act on what a client sees: ``start`` makes the sockets (and timers) listen again, no
handler starts; ``stop`` stops the timers, the sockets and any running handler (maintenance:
nothing answers, and other commands say so instead of running the handler in-process);
``restart`` stops only the running handlers, so the next request runs the current code and
configuration while the sockets keep listening (a request arriving meanwhile waits, it is not
refused). The work is :mod:`trading.ops.systemd`; this module picks the manager, prints one
line per unit changed (or ``--json``) and turns refusals into one line and an exit code.

Exit codes: 0 done (also when nothing needed changing), 1 a unit failed to change or is not
installed, 2 an unknown service, 5 no systemd manager answers, 6 the manager refused (the
line names the ``sudo`` command to run).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import typer

from trading.errors import ControlError, NoSystemd, NotPermitted
from trading.handlers import SOCKET_SERVICES as SERVICES  # the web dashboard too

from . import common

ServicesArgument = typer.Argument(
    None, metavar="SERVICE", show_default=False,
    help=f"Services ({', '.join(SERVICES)}); default: all, with the timers.",
    autocompletion=lambda: list(SERVICES))


# Help as one string per paragraph: typer keeps a docstring's line breaks in `--help`.
START_HELP = (
    "Start the sockets (and the timers): the services answer on demand again.\n\n"
    "No handler starts now; systemd starts each one on its first request. A failed socket is "
    "reset and started again.")
STOP_HELP = (
    "Stop the sockets and any running handler (and the timers): nothing answers.\n\n"
    "For maintenance. Until `trading start`, other commands say the service is stopped "
    "rather than running its handler in-process (`trading --in-process ...` does that on "
    "purpose).")
RESTART_HELP = (
    "Make the next request run the current code and configuration (after an upgrade or a "
    "config change).\n\n"
    "Stops the running handlers while the sockets keep listening: a request arriving "
    "meanwhile waits and is served by a new process, not refused. Sockets or timers that are "
    "not running are started, as by `trading start`.")


def register(app: typer.Typer) -> None:
    app.command("start", help=START_HELP)(start)
    app.command("stop", help=STOP_HELP)(stop)
    app.command("restart", help=RESTART_HELP)(restart)


def start(services: list[str] = ServicesArgument, as_json: bool = common.json_option("a line per unit changed")) -> None:
    _run("start", services, as_json)


def stop(services: list[str] = ServicesArgument, as_json: bool = common.json_option("a line per unit changed")) -> None:
    _run("stop", services, as_json)


def restart(services: list[str] = ServicesArgument, as_json: bool = common.json_option("a line per unit changed")) -> None:
    _run("restart", services, as_json)


_NOTHING = {
    "start": "nothing to start: every socket listens already",
    "stop": "nothing to stop: no socket listens and no handler runs",
    "restart": "no handler running: the next request starts the current code",
}


def _run(verb: str, services: list[str] | None, as_json: bool) -> None:
    from trading.ops import systemd

    names = _names(services)
    manager = _manager()
    act: Callable[..., list[systemd.Change]] = getattr(systemd, verb)
    try:
        # The timers go with the whole set: a job wakes several services, not one.
        changes = act(manager, names, timers=not services)
    except NotPermitted as exc:
        command = " ".join(["sudo", "trading", verb, *(services or [])])
        raise NotPermitted(f"{exc}; run: {command}") from exc
    except (systemd.SystemdError, OSError, subprocess.TimeoutExpired) as exc:
        raise ControlError(f"cannot {verb}: {exc}") from exc
    if as_json:
        common.print_json({"action": verb, "systemd": manager.scope, "services": names,
                           "changed": [c.as_json() for c in changes]})
        return
    for c in changes:
        print(_line(verb, c))
    if not changes:
        print(_NOTHING[verb])


def _names(services: list[str] | None) -> list[str]:
    unknown = [s for s in services or [] if s not in SERVICES]
    if unknown:
        raise common.fail(f"unknown service {unknown[0]!r}; known: {', '.join(SERVICES)}",
                          common.EXIT_USAGE)
    return list(dict.fromkeys(services)) if services else list(SERVICES)


def _manager():
    """The manager holding the install (the user manager after ``install.sh --user``)."""
    from trading.ops import systemd

    manager, installed = systemd.detect()
    if manager is None:
        if installed:
            raise NoSystemd("the units are installed but their systemd manager is not running "
                            "(a --user install needs your login, or `sudo loginctl "
                            "enable-linger $USER`)")
        raise NoSystemd("systemd is not running here: start, stop and restart need it "
                        "(`trading` commands run the handlers in-process)")
    if not installed:
        raise ControlError(f"trading-services is not installed in the {manager.scope} manager; "
                           "run ./install.sh (or ./install.sh --user)")
    return manager


def _line(verb: str, c) -> str:
    """One line per unit changed, in the words of socket activation."""
    if c.change == "reloaded":
        return "reloaded the unit files (changed on disk)"
    if c.unit.endswith(".service") and c.change == "stopped":
        pid = f" (pid {c.pid})" if c.pid else ""
        if verb == "restart":
            return f"stopped {c.unit}{pid}: the next request starts the current code"
        return f"stopped {c.unit}{pid}"
    if c.unit.endswith(".socket"):
        if c.change == "recreated":
            return (f"recreated {c.unit}: its socket file was missing; listening again, the "
                    "handler starts on the first request")
        if c.change == "started":
            return f"started {c.unit}: listening, the handler starts on the first request"
        return f"stopped {c.unit}: nothing answers until `trading start`"
    return f"{c.change} {c.unit}"
