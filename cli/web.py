"""``trading web``: the dashboard in the foreground, without systemd.

Installed, the dashboard is ``trading-web.socket`` (systemd starts it on the first request and
it exits when idle); this command is for a machine without systemd, or a look at a checkout:
it binds ``--listen`` (default ``web.listen``, 127.0.0.1:8787) and serves until Ctrl-C. A
loopback port is open to every local account while it runs (it says so, unless ``web.token``
asks for a login); a Unix socket path (mode 0660) keeps it to you and your group.
"""

from __future__ import annotations

import sys

import typer


def register(app: typer.Typer) -> None:
    app.command("web")(web)


def web(listen: str = typer.Option(None, "--listen", "-l", metavar="ADDR",
                                   help="HOST:PORT or a Unix socket path (default: web.listen, "
                                   "127.0.0.1:8787, which every local account can open; a "
                                   "Unix socket is yours and your group's); beyond loopback "
                                   "it needs web.token")) -> None:
    """Serve the web dashboard in the foreground until Ctrl-C (installed, systemd starts it on
    demand instead: see `trading status`)."""
    from trading.handlers import SOCKET_SERVICES, load
    from trading.web.serve import main

    code = main([*(["--listen", listen] if listen else []), "--idle-exit", "0"],
                own_logging=False, registry=load, services=list(SOCKET_SERVICES),
                announce=lambda line: print(line, file=sys.stderr, flush=True))
    if code:
        raise typer.Exit(code)
