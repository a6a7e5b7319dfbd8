"""Access control: who may talk to a service, checked with real peers of a different uid.

Two fences: the socket file (0660, user and group ``trading`` on a system install) and the
handler's own SO_PEERCRED check against ``allowed_users`` / ``allowed_groups``
(:mod:`trading.runtime.access`). To test the second fence on its own, the socket of a live handler is
opened to everyone (chmod 0666) so the kernel lets ``nobody`` connect; the handler must then
answer that stranger with a clear Forbidden error, and serve a ``nobody`` who belongs to an
allowed group or is an allowed user.

The clients run as ``nobody`` through ``setpriv`` with the system Python and only the standard
library (the development venv need not be readable by ``nobody``). These tests need root.

And no secret leaks: a Redis password in ``redis_url`` never appears in a health check,
``trading config show``, an error message, or a service's log.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from support.units import render_units
from typer.testing import CliRunner

# A raw JSON-RPC client: connect, send one request line, print the answer line (or the error).
_CLIENT = r"""
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
try:
    s.connect(sys.argv[1])
    s.sendall(json.dumps({"jsonrpc": "2.0", "id": 7, "method": sys.argv[2]}).encode() + b"\n")
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    print(buf.decode())
except OSError as exc:
    print(json.dumps({"oserror": exc.errno, "text": str(exc)}))
"""

needs_root = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                                reason="needs root and setpriv to run a client as another uid")


def as_user(path: Path, method: str, *, user: str = "nobody", group: str = "nogroup",
            groups: list[str] | None = None) -> dict:
    """Call ``method`` on the socket at ``path`` from a process running as ``user``."""
    cmd = ["setpriv", f"--reuid={user}", f"--regid={group}"]
    cmd += [f"--groups={','.join(groups)}"] if groups else ["--clear-groups"]
    cmd += ["/usr/bin/python3", "-I", "-c", _CLIENT, str(path), method]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, cwd="/")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def open_to_everyone(path: Path) -> None:
    """Let any uid reach the socket, so only the handler's own check stands in the way."""
    d = path.parent
    while d != Path("/"):
        d.chmod(d.stat().st_mode | 0o011)  # search permission on the directories above
        if d == Path(os.environ.get("TMPDIR", "/tmp")):
            break
        d = d.parent
    path.chmod(0o666)


@pytest.fixture
def handler(activate, tmp_path):
    """A live market-data handler with ``allowed_groups`` / ``allowed_users`` from a config file."""

    def start(allowed_groups: list[str], allowed_users: list[str] = ()):
        conf = tmp_path / "access.toml"
        conf.write_text(f"allowed_groups = {json.dumps(list(allowed_groups))}\n"
                        f"allowed_users = {json.dumps(list(allowed_users))}\n")
        h = activate("market-data", idle_exit=30, TRADING_CONFIG=str(conf))
        open_to_everyone(h.path)
        return h

    return start


@needs_root
def test_a_stranger_gets_a_clear_forbidden_error_and_nothing_is_served(handler):
    h = handler(["trading"])
    answer = as_user(h.path, "health_check")
    assert "result" not in answer, answer
    assert answer["id"] == 7
    err = answer["error"]
    assert err["code"] == -32004
    assert err["data"]["problem"] == "forbidden"
    assert err["data"]["uid"] == pwd.getpwnam("nobody").pw_uid
    assert re.fullmatch(r"access denied: nobody is not allowed to use this service \(allowed "
                        r"groups: trading; see allowed_users/allowed_groups\)", err["message"]), err
    # The same socket still serves root (the service's own user here) at once.
    with h.connect() as c:
        assert c.call("health_check")["result"]["service"] == "market-data"
    log = h.stop()
    assert "refused peer" in log and f"uid={pwd.getpwnam('nobody').pw_uid}" in log


@needs_root
def test_a_peer_in_an_allowed_supplementary_group_is_served(handler):
    h = handler(["adm"])
    answer = as_user(h.path, "health_check", groups=["adm"])
    assert answer["result"]["service"] == "market-data", answer
    # ... and the same uid without that group is refused.
    assert as_user(h.path, "health_check")["error"]["code"] == -32004


@needs_root
def test_a_peer_whose_primary_group_is_allowed_is_served(handler):
    h = handler(["nogroup"])
    assert as_user(h.path, "health_check")["result"]["service"] == "market-data"


@needs_root
def test_an_allowed_user_is_served_whatever_its_groups(handler):
    h = handler([], ["nobody"])
    assert as_user(h.path, "health_check")["result"]["service"] == "market-data"


@needs_root
def test_the_0660_socket_file_itself_keeps_strangers_out(activate):
    """Without the chmod the kernel refuses ``nobody`` before the handler sees it."""
    h = activate("market-data", idle_exit=30)
    h.path.chmod(0o660)
    open_dir = h.path.parent
    open_dir.chmod(open_dir.stat().st_mode | 0o011)
    answer = as_user(h.path, "health_check")
    assert answer.get("oserror") == 13, answer  # EACCES


def test_rendered_system_sockets_are_0660_and_owned_by_trading(tmp_path):
    out = render_units("system", tmp_path / "system", "/opt/trading/venv")
    sockets = sorted(out.glob("trading-*.socket"))
    from trading.handlers import SOCKET_SERVICES

    assert {p.stem for p in sockets} == {f"trading-{n}" for n in SOCKET_SERVICES}
    for path in sockets:
        text = path.read_text()
        assert re.search(r"^SocketMode=0660$", text, re.M), path.name
        assert re.search(r"^SocketUser=trading$", text, re.M), path.name
        assert re.search(r"^SocketGroup=trading$", text, re.M), path.name
    for path in sorted(out.glob("trading-*.service")):
        text = path.read_text()
        assert re.search(r"^User=trading$", text, re.M), path.name
        assert re.search(r"^Group=trading$", text, re.M), path.name


def test_a_user_install_leaves_socket_ownership_to_the_user(rendered):
    for path in sorted(rendered["user"].glob("trading-*.socket")):
        text = path.read_text()
        assert re.search(r"^SocketMode=0660$", text, re.M), path.name
        assert not re.search(r"^Socket(User|Group)=", text, re.M), path.name


# -- secrets -----------------------------------------------------------------------------
SECRET = "s3cr3t-Pa55w0rd"


# Port 1: refused at once, no network. redis-py takes the password from either place.
@pytest.mark.parametrize("url, shown", [
    (f"redis://trader:{SECRET}@127.0.0.1:1/0", "redis://trader:***@127.0.0.1:1/0"),
    (f"redis://127.0.0.1:1/0?password={SECRET}", "redis://127.0.0.1:1/0?password=***"),
], ids=["userinfo", "query"])
def test_a_redis_password_is_never_logged_or_returned(activate, monkeypatch, url, shown):
    """Predictions publish to a Redis that refuses: the warning, the answers, the health
    checks and ``trading config show`` all show the URL without its password."""
    env = {"TRADING_SOURCE": "sample", "TRADING_NEWS_SOURCE": "sample",
           "TRADING_REDIS_URL": url, "TRADING_IN_PROCESS": "never"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    handlers = {name: activate(name, idle_exit=30) for name in
                ("market-data", "sentiment", "prediction")}
    from trading import config
    from trading.handlers import client

    call = client(config.get()).call
    seen = []
    made = call("prediction", "generate_predictions", {"symbols": ["CBA", "BHP"]})
    assert set(made["results"]) == {"CBA.AX", "BHP.AX"}
    seen.append(json.dumps(made))
    health = call("prediction", "health_check")
    assert health["redis"] is True and health["publish_failures"] == 1
    seen.append(json.dumps(health))
    for name in ("market-data", "sentiment"):
        seen.append(json.dumps(call(name, "health_check")))
    # An error answer mentioning configuration, for good measure.
    from trading.errors import RPCError

    with pytest.raises(RPCError) as info:
        call("prediction", "generate_predictions", {"symbols": ["../../etc/passwd"], "source": 1})
    seen.append(str(info.value))

    from trading import config
    from trading.cli.main import app

    config.reset()
    runner = CliRunner()
    for args in (["config", "show"], ["config", "show", "--json"],
                 ["call", "prediction", "health_check"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        seen.append(result.output)
    listed = json.loads(runner.invoke(app, ["config", "show", "--json"]).output)
    url = {r["key"]: r["value"] for r in listed["settings"]}["redis_url"]
    assert url == shown

    logs = {name: h.stop() for name, h in handlers.items()}
    assert f"publishing 2 event(s) to {shown} failed" in logs["prediction"], logs["prediction"]
    seen.extend(logs.values())
    leaks = [text[:200] for text in seen if SECRET in text]
    assert leaks == []
