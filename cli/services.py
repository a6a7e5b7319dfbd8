"""``trading serve`` and ``trading call``: run one handler, make one raw call."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from trading.handlers import SERVICES, SOCKET_SERVICES

from . import common


def _services() -> list[str]:
    """Shell completion of a service name."""
    return list(SERVICES)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("call")(call)
    app.command("logs")(logs)


def serve(
    name: str = typer.Argument(..., help=f"Service: {', '.join(SERVICES)}.",
                                     autocompletion=_services),
    socket: Optional[Path] = typer.Option(None, "--socket", help="Socket path to bind."),
    idle_exit: Optional[float] = typer.Option(None, "--idle-exit", min=0.1, help="Seconds idle before exit."),
) -> None:
    """Run one service in the foreground (for development; systemd runs them in production)."""
    if name not in SERVICES:
        raise common.fail(f"unknown service {name!r}; known: {', '.join(SERVICES)}",
                          common.EXIT_USAGE)
    from trading.runtime.activation import run
    from trading.handlers import load

    argv = []
    if socket is not None:
        argv += ["--socket", str(socket)]
    if idle_exit is not None:
        argv += ["--idle-exit", str(idle_exit)]
    # As the units' entry point (trading.handlers.main): a peer without a socket runs here.
    raise typer.Exit(run(load(name), argv, registry=load))


def call(
    service: str = typer.Argument(..., help=f"Service: {', '.join(SERVICES)}.",
                                     autocompletion=_services),
    method: str = typer.Argument(..., help="Method name (see `trading call SERVICE rpc.discover`)."),
    pairs: list[str] = typer.Argument(None, help="Parameters as key=value (values may be JSON)."),
    params: Optional[str] = typer.Option(None, "--params", help="All parameters as one JSON object."),
    timeout: Optional[float] = typer.Option(None, "--timeout", min=0.1, help="Seconds to wait for the answer."),
) -> None:
    """Call one method and print its result as JSON; an error is one line and a non-zero exit."""
    if service not in SERVICES:
        raise common.fail(f"unknown service {service!r}; known: {', '.join(SERVICES)}",
                          common.EXIT_USAGE)
    body = {}
    if params:
        try:
            body = json.loads(params)
        except ValueError as exc:
            raise common.fail(f"--params is not JSON: {exc}", common.EXIT_USAGE)
        if not isinstance(body, (dict, list)):
            raise common.fail("--params must be a JSON object or array", common.EXIT_USAGE)
    if pairs:
        if not isinstance(body, dict):
            raise common.fail("key=value pairs cannot be mixed with positional --params",
                              common.EXIT_USAGE)
        body.update(common.parse_kv(pairs))
    result = common.client().call(service, method, body or None, timeout=timeout)
    common.print_json(result)


def logs(
    name: str = typer.Argument(..., help=f"Service: {', '.join(SOCKET_SERVICES)}.",
                                     autocompletion=lambda: list(SOCKET_SERVICES)),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines."),
    lines: int = typer.Option(50, "--lines", "-n", min=1, help="How many recent lines."),
    user: Optional[bool] = typer.Option(None, "--user/--system",
                                        help="Which manager's journal (default: the one the "
                                        "install uses; else yours)."),
) -> None:
    """Show a service's log from the journal (journalctl)."""
    import os
    import shutil

    if name not in SOCKET_SERVICES:
        raise common.fail(f"unknown service {name!r}; known: {', '.join(SOCKET_SERVICES)}",
                          common.EXIT_USAGE)
    journalctl = shutil.which("journalctl")
    if journalctl is None:
        raise common.fail("journalctl not found: logs need systemd's journal "
                          "(handlers run in-process log to the terminal)")
    from trading.config import read_install

    install = read_install() or {}
    if user is None:  # the install's manager (install.sh records it), else the caller's
        user = install["mode"] == "user" if install else os.geteuid() != 0
    unit = f"trading-{name}.service"
    owner = install.get("uid") if install.get("mode") == "user" else None
    if user and owner and owner.isdigit() and int(owner) != os.geteuid():
        # Root (or anyone allowed to read the journal) looking at another user's --user
        # install: `journalctl --user` would read the caller's own user journal, and
        # --user-unit matches the caller's uid. The install's user's unit, by its fields:
        # its output, and its manager's lines about it.
        where = [f"_SYSTEMD_USER_UNIT={unit}", f"_UID={owner}", "+",
                 f"USER_UNIT={unit}", f"_UID={owner}"]
    else:
        where = [*(["--user"] if user else []), "-u", unit]
    argv = [journalctl, *where, "-n", str(lines), "--no-pager", *(["-f"] if follow else [])]
    os.execv(journalctl, argv)
