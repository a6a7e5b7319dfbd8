"""The dashboard under a real systemd (tests/sandbox.py): ``install.sh --user`` puts
trading-web.socket on a port of the sandbox's own; no process runs before the first request,
the page answers (with predictions the installed services made), the process exits when
idle, and requests that land during an exit are served, by that instance or the next.

First, on a manager of its own (:class:`TestTakenPort`), what ``install.sh --user`` does when
something else already listens on a TCP address chosen for the dashboard (RStudio Server's
default port is 8787, and so is another user's install): an address asked for fails before
anything changes, a TCP default (``TRADING_WEB_DEFAULT_LISTEN``) moves to the next free port
and says so, a socket that cannot listen anyway is named, and a Unix socket in the runtime
directory takes the dashboard off TCP altogether.

Then, on another (:class:`TestAudience`), who can open it (issue 27): by default a Unix socket
that another uid cannot open and the owner (and the group) can; a loopback port chosen with
``--web-listen``, which every local account can open, as the install says; and ``web.token``
narrowing that choice. The rest of the module runs on the sandbox's own TCP port.

The tests share one manager and run in file order.
"""

from __future__ import annotations

import errno
import json
import os
import random
import re
import socket
import sys
import time
from pathlib import Path

import pytest
from conftest import wait_for
from sandbox import INSTALL_SH, SandboxUnavailable, UserManager, install, unavailable

pytestmark = [pytest.mark.systemd, pytest.mark.slow]

IDLE_EXIT = 1.0  # seconds, by drop-in (the shipped default is 30)


@pytest.fixture(scope="module")
def sd(installed: UserManager) -> UserManager:
    installed.set_idle_exit(IDLE_EXIT, ["web"])
    # The race test below starts the dashboard dozens of times in a minute, under the shipped
    # unit: it has no start limit (normal starts of an on-demand service are not failures).
    return installed


def port(sd: UserManager) -> int:
    return int(sd.env["TRADING_WEB_LISTEN"].rsplit(":", 1)[1])


def get(sd: UserManager, path: str = "/", timeout: float = 30.0) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port(sd)), timeout=timeout) as s:
        return exchange(s, path)


def exchange(s: socket.socket, path: str) -> tuple[int, bytes]:
    """One HTTP/1.1 GET on the connected socket ``s``: the status code and the body."""
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return (int(head.split(b" ", 2)[1]) if head else 0), body


def web_state(sd: UserManager) -> dict[str, str]:
    return sd.show("trading-web.service", "ActiveState", "MainPID", "Result")


# -- the dashboard's address is taken ---------------------------------------------------------
class Listener:
    """A plain listener on a free loopback port: what RStudio Server is on 8787."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"

    def close(self) -> None:
        self.sock.close()


def holder() -> str:
    """How install.sh names the listener's owner, this process: ss's name for it and its pid."""
    return f"{Path('/proc/self/comm').read_text().strip()} (pid {os.getpid()})"


def run_install(manager: UserManager, *extra: str) -> tuple[int, str, str]:
    """``install.sh --user`` as :func:`sandbox.install` runs it, for the runs that fail."""
    r = manager.run(str(INSTALL_SH), "--user", "--deps-from", str(Path(sys.prefix).resolve()),
                    *extra, check=False, timeout=300)
    return r.returncode, r.stdout, r.stderr


def web_row(manager: UserManager) -> dict:
    report = json.loads(manager.trading("status", "--json", check=False).stdout)
    return next(r for r in report["services"] if r["service"] == "web")


@pytest.fixture(scope="class")
def crowded():
    """A manager of its own with nothing installed, whose dashboard default is a TCP address
    held by a :class:`Listener`: TRADING_WEB_DEFAULT_LISTEN makes the default TCP (as it was
    before the Unix socket, 127.0.0.1:8787), and without TRADING_WEB_LISTEN (an address asked
    for) that default applies. Class scope: it is gone before the module's own manager
    starts."""
    taken = Listener()
    manager = UserManager()
    del manager.env["TRADING_WEB_LISTEN"]
    manager.env["TRADING_WEB_DEFAULT_LISTEN"] = taken.address
    try:
        manager.start()
    except SandboxUnavailable as exc:
        taken.close()
        manager.cleanup()
        unavailable(str(exc))
    manager.taken = taken  # type: ignore[attr-defined]
    try:
        yield manager
    finally:
        manager.cleanup()
        taken.close()


class TestTakenPort:
    def test_a_taken_address_asked_for_fails_in_one_line_with_nothing_changed(self, crowded):
        taken = crowded.taken.address
        code, out, err = run_install(crowded, "--web-listen", taken)
        assert (code, out) == (1, ""), out + err
        [line] = err.splitlines()
        assert line.startswith(
            f"install: error: the dashboard's address {taken} (--web-listen) is taken by "
            f"{holder()}; nothing was changed; choose another: ./install.sh --user "
            "--web-listen 127.0.0.1:"), line
        assert list(crowded.unit_dir.glob("trading*")) == []
        assert not crowded.venv.exists() and not (crowded.home / ".local/bin/trading").exists()
        assert crowded.systemctl("is-enabled", "trading.target", check=False).returncode != 0
        assert "trading-" not in crowded.systemctl("list-sockets", "--all").stdout.replace(
            str(crowded.root), "")

    def test_a_taken_default_moves_to_the_next_free_port_and_says_so_first(self, crowded):
        taken = crowded.taken
        out = install(crowded).stdout
        said = re.search(rf"^install: {re.escape(taken.address)} is taken by "
                         rf"{re.escape(holder())}; the dashboard listens on 127\.0\.0\.1:(\d+) "
                         r"instead; --web-listen to choose$", out, re.MULTILINE)
        assert said, out
        new = crowded.web_port = int(said.group(1))
        assert taken.port < new <= taken.port + 50
        assert out.index(said.group(0)) < out.index("enabled trading.target")  # before anything
        assert out.splitlines()[-1].startswith(
            f"install: dashboard: http://127.0.0.1:{new}/; from another machine: "
            f"ssh -L 8787:127.0.0.1:{new} "), out
        listing = crowded.systemctl("list-sockets", "--all").stdout
        assert re.search(rf"127\.0\.0\.1:{new}\s+trading-web\.socket", listing), listing
        assert f"web_listen=127.0.0.1:{new}" in (crowded.venv / "trading-install").read_text()
        assert web_row(crowded)["socket_path"] == f"127.0.0.1:{new}"
        # It serves there, started through the venv's console script.
        with socket.create_connection(("127.0.0.1", new), timeout=30) as s:
            assert exchange(s, "/api/events")[0] == 200
        [pid] = crowded.handler_pids("web")
        assert crowded.run("cat", f"/proc/{pid}/cmdline").stdout.split("\0")[1] == \
            f"{crowded.venv}/bin/trading-web"

    def test_a_rerun_keeps_the_chosen_port_when_the_default_is_free_again(self, crowded):
        crowded.taken.close()
        out = install(crowded).stdout
        if "sources changed since the last install" in out:
            out = install(crowded).stdout  # the checkout was edited meanwhile: once more
        assert "is taken" not in out and "nothing changed" in out, out
        assert out.splitlines()[-1].startswith(
            f"install: dashboard: http://127.0.0.1:{crowded.web_port}/;"), out

    def test_a_socket_that_cannot_listen_anyway_is_named_and_the_rest_is_installed(self,
                                                                                   crowded):
        # Something takes the address between the check and the start: here a drop-in points
        # the socket at a port held by another listener (test only; the unit is unchanged).
        other = Listener()
        crowded.systemctl("stop", "trading-web.service", "trading-web.socket")
        drop = crowded.drop_in("trading-web.socket", "test-taken",
                               f"[Socket]\nListenStream=\nListenStream={other.address}\n")
        try:
            code, out, err = run_install(crowded)
            assert code == 1, out + err
            errors = err.splitlines()
            assert (f"install: error: trading-web.socket cannot start: {other.address} is taken "
                    f"by {holder()}; going on without the dashboard") in errors, err
            assert errors[-1].startswith(
                f"install: error: the dashboard is off: {other.address} is taken by {holder()}; "
                "move it: ./install.sh --user --web-listen 127.0.0.1:"), err
            assert "Job failed" not in err
            assert "every service answered health_check through its socket" in out, out
            for name in ("market-data", "prediction"):
                assert crowded.show(f"trading-{name}.socket", "ActiveState")["ActiveState"] == \
                    "active"
        finally:
            other.close()
            crowded.remove_drop_in(drop)
            crowded.systemctl("reset-failed", "trading-web.socket", check=False)

    def test_a_unix_socket_in_the_runtime_dir_takes_the_dashboard_off_tcp(self, crowded):
        out = install(crowded, "--web-listen", "%t/trading/web.sock").stdout
        path = crowded.runtime_dir / "trading" / "web.sock"
        assert out.splitlines()[-1].startswith(
            f"install: dashboard: Unix socket {path}; from your machine: ssh -L 8787:{path} "), out
        assert "web_listen=%t/trading/web.sock" in (crowded.venv / "trading-install").read_text()
        assert web_row(crowded)["socket_path"] == str(path)
        assert oct(path.stat().st_mode & 0o777) == oct(0o660)
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(30)
            s.connect(str(path))
            assert exchange(s, "/api/events")[0] == 200
        with pytest.raises(ConnectionRefusedError):  # the TCP port is given back
            socket.create_connection(("127.0.0.1", crowded.web_port), timeout=5).close()


# -- who can open it ----------------------------------------------------------------------------
# A client as another uid: the system Python and the standard library only (the development
# venv need not be readable by that uid); prints the answer's status code, or the errno.
_AS_OTHER = r"""
import json, socket, sys
address, path, token = sys.argv[1], sys.argv[2], sys.argv[3]
try:
    if address.startswith("/"):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(30)
        s.connect(address)
    else:
        host, _, port = address.rpartition(":")
        s = socket.create_connection((host, int(port)), timeout=30)
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: close\r\n\r\n".encode())
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    print(json.dumps({"status": int(data.split(b" ", 2)[1])}))
except OSError as exc:
    print(json.dumps({"errno": exc.errno}))
"""

needs_setpriv = pytest.mark.skipif(
    os.geteuid() != 0 or not Path("/usr/bin/setpriv").exists(),
    reason="needs root and setpriv to run a client as another uid")


def as_other(address: str, path: str, *, user: str = "nobody", groups: str = "",
             token: str = "") -> dict:
    """GET ``path`` from the dashboard at ``address`` as ``user`` (supplementary ``groups``)."""
    import subprocess

    cmd = ["setpriv", f"--reuid={user}", "--regid=nogroup",
           f"--groups={groups}" if groups else "--clear-groups",
           "/usr/bin/python3", "-I", "-c", _AS_OTHER, address, path, token]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd="/")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def as_owner(address: str, path: str, token: str = "") -> int:
    if address.startswith("/"):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(30)
        s.connect(address)
    else:
        host, _, p = address.rpartition(":")
        s = socket.create_connection((host, int(p)), timeout=30)
    with s:
        if token:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
                      f"{token}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := s.recv(65536):
                data += chunk
            return int(data.split(b" ", 2)[1])
        return exchange(s, path)[0]


@pytest.fixture(scope="class")
def plain():
    """A manager of its own where ``install.sh --user`` runs as a user would: no address asked
    for (the sandbox's own TRADING_WEB_LISTEN removed), so the default applies. The directories
    above the runtime directory are opened to every uid for the test (a real one is mode 0700,
    /run/user/UID): the socket file's own mode is then all that stands in the way."""
    manager = UserManager()
    del manager.env["TRADING_WEB_LISTEN"]
    try:
        manager.start()
    except SandboxUnavailable as exc:
        manager.cleanup()
        unavailable(str(exc))
    try:
        yield manager
    finally:
        manager.cleanup()


def open_the_way(manager: UserManager, address: str) -> None:
    """Search permission for every uid on the directories above a socket in the sandbox."""
    if not address.startswith("/"):
        return
    d = Path(address).parent
    while d != manager.root.parent:
        d.chmod(d.stat().st_mode | 0o011)
        d = d.parent


@needs_setpriv
class TestAudience:
    """Issue 27, finding 5: ``nobody`` read /api/history of a default install (and had
    /api/symbol/X fetch market data). The default is now a Unix socket only its owner and
    group can open; loopback, for every local account, is a choice that says so."""

    def test_by_default_another_uid_cannot_open_the_dashboard_and_the_owner_can(self, plain):
        out = install(plain).stdout
        address = web_row(plain)["socket_path"]
        open_the_way(plain, address)
        assert as_owner(address, "/api/history") == 200
        stranger = as_other(address, "/api/history")
        assert stranger == {"errno": errno.EACCES}, (address, stranger)
        assert as_other(address, "/api/symbol/ZZZ9") == {"errno": errno.EACCES}
        # The group is the audience too: 0660 of the owner's group (trading, for a system
        # install), here root's, which the stranger joins.
        assert as_other(address, "/api/history", groups="0") == {"status": 200}
        path = plain.runtime_dir / "trading" / "web.sock"
        assert address == str(path)
        assert out.splitlines()[-2:] == [
            ("install: only you can open the dashboard (its socket is in your runtime "
             "directory, mode 0700)"),
            (f"install: dashboard: Unix socket {path}; from your machine: ssh -L 8787:{path} "
             f"{plain.env['LOGNAME']}@{os.uname().nodename}, then open http://127.0.0.1:8787/")
        ], out
        shown = plain.trading("status").stdout.splitlines()
        assert f"dashboard: Unix socket {path}; from your machine: ssh -L 8787:{path} " \
            in "\n".join(shown), shown
        assert shown[-1].startswith("only you can open the dashboard"), shown

    def test_loopback_chosen_is_open_to_every_local_account_and_said_so(self, plain):
        port = Listener()  # a free port, given back at once
        port.close()
        address = port.address
        out = install(plain, "--web-listen", address).stdout
        if "sources changed since the last install" in out:
            out = install(plain, "--web-listen", address).stdout
        assert (f"install: warning: every local account can open the dashboard on {address} "
                "(a loopback port cannot tell users apart): set web.token to ask for a login, "
                "or keep it to yourself: ./install.sh --user --web-listen "
                "'%t/trading/web.sock'") in out.splitlines(), out
        assert web_row(plain)["socket_path"] == address
        assert as_other(address, "/api/history") == {"status": 200}  # as documented
        assert as_owner(address, "/api/history") == 200
        plain.chosen = address  # type: ignore[attr-defined]

    def test_a_rerun_keeps_the_port_and_a_token_narrows_it(self, plain):
        address = plain.chosen
        config = plain.home / ".config/trading/config.toml"
        config.write_text(config.read_text() + '\n[web]\ntoken = "s3cret-dashboard-token"\n')
        plain.systemctl("stop", "trading-web.service")  # the next request reads the token
        out = install(plain).stdout  # no --web-listen: an upgrade keeps the recorded choice
        if "sources changed since the last install" in out:
            out = install(plain).stdout
        assert "is taken" not in out and web_row(plain)["socket_path"] == address, out
        assert (f"install: every local account can reach the dashboard on {address}; it asks "
                "each for web.token") in out.splitlines(), out
        assert as_other(address, "/api/history") == {"status": 401}
        assert as_other(address, "/api/history", token="s3cret-dashboard-token") == \
            {"status": 200}
        assert as_owner(address, "/api/history", token="s3cret-dashboard-token") == 200


def test_the_socket_listens_and_no_dashboard_runs_before_the_first_request(sd):
    listing = sd.systemctl("list-sockets", "--all").stdout
    assert f"127.0.0.1:{port(sd)}" in listing and "trading-web.socket" in listing, listing
    st = web_state(sd)
    assert (st["ActiveState"], st["MainPID"]) == ("inactive", "0"), st
    assert sd.handler_pids("web") == []
    status = json.loads(sd.trading("status", "--json").stdout)
    [row] = [r for r in status["services"] if r["service"] == "web"]
    assert row["socket"] == "listening" and row["state"] == "inactive"


def test_the_overview_answers_with_the_installed_services_predictions(sd):
    sd.trading("predict", "--source", "sample", "CBA", "BHP", timeout=120)
    code, body = get(sd, "/")
    assert code == 200, body[:500]
    assert b"CBA.AX" in body and b"BHP.AX" in body
    assert len(sd.handler_pids("web")) == 1
    code, body = get(sd, "/api/symbol/CBA.AX")
    chart = json.loads(body)["chart"]
    assert code == 200 and chart["error"] is None and len(chart["bars"]) > 200
    # The services page: systemctl from inside the sandboxed dashboard.
    code, body = get(sd, "/api/services")
    services = json.loads(body)
    assert services["error"] is None, services
    assert {r["service"] for r in services["services"]} >= {"web", "prediction"}


def test_the_dashboard_exits_when_idle_and_leaves_nothing(sd):
    wait_for(lambda: web_state(sd)["ActiveState"] == "inactive", 20, "the idle exit")
    assert web_state(sd)["Result"] == "success"
    assert sd.handler_pids("web") == []


def test_requests_during_the_exit_are_served(sd):
    """Fresh connections spaced around the idle timeout: many land while an instance is
    exiting. Each is answered, by that instance or by the next one systemd starts."""
    rnd = random.Random(18)
    pids: set[int] = set()
    codes = []
    for _ in range(24):
        codes.append(get(sd, "/api/events")[0])
        pid = int(web_state(sd)["MainPID"])
        if pid:
            pids.add(pid)
        time.sleep(rnd.uniform(0.85, 1.25) * IDLE_EXIT)
    assert codes == [200] * len(codes)
    assert len(pids) >= 4, f"only {len(pids)} instances: the exits did not interleave"
    wait_for(lambda: web_state(sd)["ActiveState"] == "inactive", 20, "the last idle exit")
    logs = sd.logs()
    assert "Traceback" not in logs.split("trading-web", 1)[-1], logs[-3000:]


def test_a_dashboard_that_cannot_start_says_why_and_never_fails_the_socket(sd):
    """Issue 27: normal starts of the on-demand dashboard counted toward a start limit, and a
    broken configuration failed its socket for everyone until an admin reset it. Now each
    request gets a 503 saying why, at once; the socket stays listening however many there
    are; nothing restarts the dashboard between them; fixed, the next request is served."""
    unit = "trading-web.service"
    conf = sd.root / "broken-web-config.toml"
    conf.write_text("idle_exit = [this is not toml\n")
    drop = sd.drop_in(unit, "test-broken-config",
                      f"[Service]\nEnvironment=TRADING_CONFIG={conf}\n")
    try:
        started = []
        for _ in range(15):  # past the old limit of 10 starts in 120 s
            t0 = time.monotonic()
            code, body = get(sd, "/api/history")
            assert time.monotonic() - t0 < 5
            assert code == 503 and b"the dashboard cannot start" in body, (code, body[:300])
            assert b"cannot read configuration" in body, body[:300]
            started.append(sd.show(unit, "InvocationID")["InvocationID"])
            assert sd.show("trading-web.socket", "ActiveState")["ActiveState"] == "active"
        assert len(set(started)) == 15  # one start a request
        time.sleep(3)  # and none of its own in between
        assert sd.show(unit, "InvocationID")["InvocationID"] == started[-1]
        conf.write_text(f"idle_exit = {IDLE_EXIT}\n")
        code, body = get(sd, "/api/history")
        assert code == 200, body[:300]
    finally:
        sd.remove_drop_in(drop)
        sd.systemctl("stop", unit, check=False)
        sd.systemctl("reset-failed", "trading-web.socket", unit, check=False)
        sd.systemctl("start", "trading-web.socket", check=False)
