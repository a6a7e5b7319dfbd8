"""``trading status``: each service's socket and handler as systemd sees them, and the timers.

The answer comes from the manager that runs the units (the user manager after
``install.sh --user``, else the system manager), through ``systemctl show``: an idle service
shows its socket listening and no process, which is the design working, not a fault. A failed
socket is explained in words with the command that fixes it. Where no systemd answers, it says
so: the ``trading`` commands then run the handlers in-process.

The configured predictor is imported here too (as the prediction service would import it);
a plugged one is shown with its file, hash and import time, and one that cannot be imported
is one line on stderr.

The dashboard's address ends the table: how to reach it, and who can open it (only the
owner and the group on the default Unix socket; every local account on a loopback port).

A running handler that loaded an older configuration than the file holds now is named, with
``trading restart`` (a changed file reaches a handler only when it starts again).

Exit code: 0 when every socket listens (or there is no systemd to ask), 1 when a socket or a
service has failed, the units are missing from a running manager, or the predictor cannot be
imported.
"""

from __future__ import annotations

import subprocess

import typer

from trading.ops import systemd
from trading.handlers import SOCKET_SERVICES

from . import common


def register(app: typer.Typer) -> None:
    app.command("status")(status)


def _memory(row: systemd.ServiceRow) -> str:
    """The cgroup's figure as is; a resident-set fallback says so (it leaves out page cache)."""
    if row.memory_bytes is None:
        return ""
    figure = f"{row.memory_bytes / 2**20:.1f} MiB"
    return figure if row.memory_source == "cgroup" else f"{figure} (RSS)"


def _plugged(predictor: dict) -> bool:
    """A predictor other than the built-in rules, imported fine: worth its line."""
    from trading.signals.predictors import DEFAULT

    return predictor["ok"] and predictor["name"] != DEFAULT


def _dashboard(rows: list[systemd.ServiceRow], scope: str) -> None:
    """Where the dashboard listens, how to reach it and who can open it (the install's words)."""
    import os

    web = next((r for r in rows if r.service == "web"), None)
    if web is None or not web.socket_path or web.socket != "listening":
        return
    from trading.web import audience

    runtime = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}"
    print(audience.reach(web.socket_path, user=audience.who_am_i(), host=os.uname().nodename))
    print(audience.who(web.socket_path, scope=scope, token=audience.token_set(),
                       runtime_dir=runtime))


def _older_config(rows: list[systemd.ServiceRow]) -> list[dict]:
    """The running handlers that loaded another configuration than the file holds now (a
    config change reaches a handler only when it starts again: `trading restart`). Only a
    running one is asked (its health_check tells the file as it loaded it); an idle one
    reads the file when its socket next starts it."""
    from trading import config as _config
    from trading.errors import TradingError
    from trading.handlers import SERVICES
    from trading.runtime.client import Client

    running = [r for r in rows if r.pid and r.service in SERVICES]
    if not running:
        return []
    client = Client(_config.get(), timeout=2.0, in_process="never", keep_connections=False)
    stale = []
    try:
        for r in running:
            try:
                loaded = client.call(r.service, "health_check").get("config_loaded")
            except TradingError:
                continue  # gone idle, or busy: nothing to say about it
            if not isinstance(loaded, dict) or not loaded.get("file"):
                continue  # a handler from before config_loaded: `trading restart` anyway
            try:
                now = _config.file_stamp(loaded["file"])
            except OSError:
                continue  # not readable here: cannot tell
            then = None if loaded.get("missing") else loaded.get("crc32")
            if (None if now is None else now["crc32"]) != then:
                stale.append({"service": r.service, "pid": r.pid, "file": loaded["file"]})
    finally:
        client.close()
    return stale


def status(as_json: bool = common.JsonOption) -> None:
    """Show each service's socket (listening or failed), handler (active or idle), PID, memory
    and socket path, and the timers with their next run."""
    from trading import config as _config

    # The predictor first: a broken one makes the status a failure whatever systemd says.
    predictor = common.check_predictor(_config.get())
    try:
        manager = common.installed_manager(as_json, "`trading` commands run the handlers "
                                           "in-process", {"services": [], "timers": [],
                                                          "predictor": predictor})
    except typer.Exit as stop:
        if not as_json and _plugged(predictor):
            print(common.predictor_line(predictor))
        raise typer.Exit(common.EXIT_FAILURE if not predictor["ok"] else stop.exit_code)
    try:
        rows = systemd.service_rows(manager, SOCKET_SERVICES)
        timers = systemd.timer_rows(manager)
    except (systemd.SystemdError, OSError, subprocess.TimeoutExpired) as exc:
        raise common.fail(f"cannot read systemd's state: {exc}")
    ok = all(r.ok for r in rows) and predictor["ok"]
    older = _older_config(rows)
    if as_json:
        common.print_json({"systemd": manager.scope, "installed": True, "ok": ok,
                           "services": [r.as_json() for r in rows],
                           "timers": [t.as_json() for t in timers], "predictor": predictor,
                           "older_config": older})
    else:
        common.table(f"services ({manager.scope} manager)",
                     ["service", "socket", "handler", "pid", "memory", "socket path"],
                     [[r.service, r.socket, r.state, r.pid or "", _memory(r),
                       r.socket_path or ""] for r in rows])
        if timers:
            common.table("timers", ["timer", "runs", "state", "next run", "last run"],
                         [[t.timer, t.unit, t.state, t.next_run or "-",
                           t.last_run or ("none since systemd started" if t.stamp_only
                                          else "-")]
                          for t in timers])
        else:
            print("timers: none installed")
        if _plugged(predictor):
            print(common.predictor_line(predictor))
        if older:
            print(f"{', '.join(o['service'] for o in older)} run"
                  f"{'s' if len(older) == 1 else ''} with an older configuration than "
                  f"{older[0]['file']} (changed since started): `trading restart` makes the "
                  "next request use it")
        _dashboard(rows, manager.scope)
    if not ok:
        raise typer.Exit(common.EXIT_FAILURE)
