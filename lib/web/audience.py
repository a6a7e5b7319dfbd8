"""Who can open the dashboard at an address, and how to reach it: the words that install.sh,
``trading status`` and ``trading web`` print, from one place.

The address decides the audience before any request arrives:

- **a Unix socket** (the installed default, ``%t/trading/web.sock``): the kernel checks the
  file's mode at ``connect()``. A ``--user`` install's socket is in ``/run/user/UID``, a
  directory of mode 0700: only that user (and root). A system install's is
  ``/run/trading/web.sock``, mode 0660 ``trading:trading``: root and the trading group;
- **a loopback port** (``--web-listen 127.0.0.1:8787``, an explicit choice): every account on
  the host, ``nobody`` included; a TCP port cannot tell users apart, and the dashboard runs in
  a network namespace of its own where it cannot ask the kernel who connected. Only
  ``web.token`` (a login) narrows it;
- **any other address**: whoever can reach it over the network, and only with ``web.token``
  (the dashboard refuses to serve there without one: :func:`trading.web.serve.check_exposure`).

``python -m trading.web.audience ADDRESS SCOPE [RUNTIME_DIR]`` prints the two lines for
install.sh (SCOPE: ``system`` or ``user``; ADDRESS with ``%t`` already expanded; RUNTIME_DIR:
the user's, ``$XDG_RUNTIME_DIR`` when not given).
"""

from __future__ import annotations

import ipaddress
import os
import sys
from collections.abc import Mapping

UNIX_DEFAULT = "%t/trading/web.sock"  # what install.sh renders unless told otherwise
TUNNEL_PORT = 8787                    # the laptop's end of the SSH tunnel in the advice


def kind(listen: str) -> str:
    """``unix``, ``loopback`` or ``network`` (a wildcard such as 0.0.0.0 is network)."""
    if listen.startswith("/"):
        return "unix"
    host = listen.rpartition(":")[0].strip("[]") if ":" in listen else ""
    if host in ("localhost",):
        return "loopback"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return "network"  # a bare port (every address) or a name
    mapped = getattr(address, "ipv4_mapped", None)
    return "loopback" if (mapped or address).is_loopback else "network"


def move_command(scope: str) -> str:
    """The command that puts the dashboard on a Unix socket: the install's default one, or
    (``hand``) one that ``trading web`` binds."""
    if scope == "hand":
        return "trading web --listen PATH.sock"
    return (f"{'sudo ./install.sh' if scope == 'system' else './install.sh --user'} "
            f"--web-listen '{UNIX_DEFAULT}'")


def who(listen: str, *, scope: str, token: bool, runtime_dir: str | None = None) -> str:
    """One line: who can open the dashboard at ``listen``. ``scope``: ``system``, ``user``
    (the manager holding the socket) or ``hand`` (``trading web`` bound it itself, mode 0660);
    ``token``: ``web.token`` is set; ``runtime_dir``: the user's runtime directory (a
    ``--user`` socket inside it is the user's alone)."""
    k = kind(listen)
    if k == "unix":
        if scope == "system":
            return ("only root and the trading group can open the dashboard (its socket is "
                    "mode 0660 trading:trading; sudo adduser NAME trading to add someone)")
        if scope == "user" and runtime_dir and listen.startswith(runtime_dir.rstrip("/") + "/"):
            return ("only you can open the dashboard (its socket is in your runtime directory, "
                    "mode 0700)")
        return "only you and your group can open the dashboard (its socket is mode 0660)"
    if k == "loopback":
        if token:
            return (f"every local account can reach the dashboard on {listen}; it asks each "
                    "for web.token")
        return (f"warning: every local account can open the dashboard on {listen} (a loopback "
                "port cannot tell users apart): set web.token to ask for a login, or keep it "
                f"to {_keep_to(scope)}: "
                f"{move_command(scope)}")
    if token:
        return f"whoever can reach {listen} gets the dashboard's login; it asks for web.token"
    return (f"warning: the dashboard refuses to serve on {listen} until web.token is set "
            "(beyond loopback it needs a token)")


def _keep_to(scope: str) -> str:
    return {"system": "the trading group", "user": "yourself"}.get(scope, "you and your group")


def reach(listen: str, *, user: str, host: str) -> str:
    """One line: where the dashboard is and how to open it from another machine."""
    here = f"http://127.0.0.1:{TUNNEL_PORT}/"
    k = kind(listen)
    if k == "unix":
        return (f"dashboard: Unix socket {listen}; from your machine: ssh -L "
                f"{TUNNEL_PORT}:{listen} {user}@{host}, then open {here}")
    if k == "loopback":
        return (f"dashboard: http://{listen}/; from another machine: ssh -L "
                f"{TUNNEL_PORT}:{listen} {user}@{host}, then open {here}")
    port = listen.rpartition(":")[2]
    if listen.isdigit() or listen.startswith(("0.0.0.0:", "[::]:")):
        return f"dashboard: http://{host}:{port}/ (every address)"
    return f"dashboard: http://{listen}/"


def token_set(environ: Mapping[str, str] | None = None) -> bool:
    """Is ``web.token`` set where the dashboard reads it (the configuration file; the caller's
    own TRADING_WEB_TOKEN is not the service's, so it is left out)? An unreadable
    configuration counts as no token."""
    from trading import config
    from trading.errors import ConfigError

    env = dict(os.environ if environ is None else environ)
    env.pop("TRADING_WEB_TOKEN", None)
    try:
        return bool(config.load(env)["web.token"])
    except (ConfigError, OSError):
        return False


def who_am_i(environ: Mapping[str, str] | None = None) -> str:
    """The account to name in ``ssh USER@HOST``: the one behind sudo when there is one."""
    import getpass

    env = os.environ if environ is None else environ
    return env.get("SUDO_USER") or getpass.getuser()


def lines(listen: str, *, scope: str, token: bool, runtime_dir: str | None = None,
          user: str | None = None, host: str | None = None) -> list[str]:
    """:func:`who`, then :func:`reach`: what an install ends with."""
    return [who(listen, scope=scope, token=token, runtime_dir=runtime_dir),
            reach(listen, user=user or who_am_i(), host=host or os.uname().nodename)]


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3) or argv[1] not in ("system", "user"):
        print("usage: python -m trading.web.audience ADDRESS system|user [RUNTIME_DIR]",
              file=sys.stderr)
        return 2
    listen, scope = argv[:2]
    runtime = (argv[2] if len(argv) == 3 else os.environ.get("XDG_RUNTIME_DIR")) \
        if scope == "user" else None
    for line in lines(listen, scope=scope, token=token_set(), runtime_dir=runtime):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
