"""Who can open the dashboard at an address, in the words install.sh and ``trading status``
print (:mod:`trading.web.audience`). The kernel's side of it, a uid that is refused or
served, is tests/test_web_systemd.py (``TestAudience``) on a real systemd."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from trading.web import audience


@pytest.mark.parametrize("listen, kind", [
    ("/run/trading/web.sock", "unix"), ("127.0.0.1:8787", "loopback"),
    ("127.8.9.1:8787", "loopback"), ("[::1]:8787", "loopback"), ("localhost:8787", "loopback"),
    ("[::ffff:127.0.0.1]:8787", "loopback"), ("0.0.0.0:8787", "network"),
    ("[::]:8787", "network"), ("8787", "network"), ("192.0.2.7:8787", "network"),
    ("trading.example:8787", "network"),
])
def test_the_kind_of_an_address(listen, kind):
    assert audience.kind(listen) == kind


def test_a_unix_socket_is_the_owners_and_the_groups():
    mine = audience.who("/run/user/1000/trading/web.sock", scope="user", token=False,
                        runtime_dir="/run/user/1000")
    assert mine.startswith("only you can open the dashboard"), mine
    # A path outside the runtime directory: the socket's mode is all that holds.
    assert audience.who("/srv/proxy/web.sock", scope="user", token=False,
                        runtime_dir="/run/user/1000").startswith("only you and your group")
    system = audience.who("/run/trading/web.sock", scope="system", token=False)
    assert system.startswith("only root and the trading group"), system


def test_a_loopback_port_is_every_local_accounts_and_says_how_to_narrow_it():
    user = audience.who("127.0.0.1:8787", scope="user", token=False)
    assert user == ("warning: every local account can open the dashboard on 127.0.0.1:8787 (a "
                    "loopback port cannot tell users apart): set web.token to ask for a login, "
                    "or keep it to yourself: ./install.sh --user --web-listen "
                    "'%t/trading/web.sock'")
    system = audience.who("127.0.0.1:8787", scope="system", token=False)
    assert system.endswith("keep it to the trading group: sudo ./install.sh --web-listen "
                           "'%t/trading/web.sock'"), system
    assert audience.who("127.0.0.1:8787", scope="user", token=True) == (
        "every local account can reach the dashboard on 127.0.0.1:8787; it asks each for "
        "web.token")


def test_beyond_loopback_without_a_token_it_says_the_dashboard_refuses():
    assert "refuses to serve on 0.0.0.0:8787 until web.token" in audience.who(
        "0.0.0.0:8787", scope="user", token=False)
    assert "asks for web.token" in audience.who("0.0.0.0:8787", scope="user", token=True)


def test_how_to_reach_it():
    assert audience.reach("/run/user/1000/trading/web.sock", user="alice", host="h") == (
        "dashboard: Unix socket /run/user/1000/trading/web.sock; from your machine: ssh -L "
        "8787:/run/user/1000/trading/web.sock alice@h, then open http://127.0.0.1:8787/")
    assert audience.reach("127.0.0.1:8788", user="alice", host="h") == (
        "dashboard: http://127.0.0.1:8788/; from another machine: ssh -L 8787:127.0.0.1:8788 "
        "alice@h, then open http://127.0.0.1:8787/")
    assert audience.reach("0.0.0.0:8787", user="alice", host="h") == \
        "dashboard: http://h:8787/ (every address)"


def test_the_token_is_the_configuration_files_not_the_callers_environment(tmp_path):
    cfg = tmp_path / "config.toml"
    env = {"TRADING_CONFIG": str(cfg), "TRADING_WEB_TOKEN": "only-in-my-shell"}
    assert audience.token_set(env) is False  # the service never sees this shell's variable
    cfg.write_text('[web]\ntoken = "s3cret-token"\n')
    assert audience.token_set(env) is True
    cfg.write_text("not toml [")
    assert audience.token_set(env) is False  # unreadable: no token to count on


def test_the_command_install_sh_runs(tmp_path):
    env = {"TRADING_CONFIG": str(tmp_path / "none.toml"), "SUDO_USER": "alice",
           "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, "-m", "trading.web.audience",
                        "/run/user/1000/trading/web.sock", "user", "/run/user/1000"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    who, reach = r.stdout.splitlines()
    assert who.startswith("only you can open the dashboard")
    assert reach.startswith("dashboard: Unix socket /run/user/1000/trading/web.sock; from your "
                            "machine: ssh -L 8787:/run/user/1000/trading/web.sock alice@")
    bad = subprocess.run([sys.executable, "-m", "trading.web.audience", "x"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode == 2 and bad.stderr.startswith("usage:")



def test_trading_web_by_hand_says_where_and_who(tmp_path):
    """``trading web`` bound by hand: where, then who (with advice for this command), on
    stderr before it serves; then a Unix socket, mode 0660, the owner's and the group's."""
    import os
    import signal

    env = {**os.environ, "TRADING_CONFIG": str(tmp_path / "none.toml")}
    env.pop("TRADING_WEB_TOKEN", None)
    trading = str(Path(sys.executable).with_name("trading"))
    for listen in ("127.0.0.1:0", str(tmp_path / "web.sock")):
        proc = subprocess.Popen([trading, "web", "--listen", listen], env=env,
                                stderr=subprocess.PIPE, text=True)
        try:
            reach, who = proc.stderr.readline().rstrip("\n"), proc.stderr.readline().rstrip("\n")
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(30)
        if listen.startswith("/"):
            assert reach.startswith(f"dashboard: Unix socket {listen}; from your machine: ")
            assert who == ("only you and your group can open the dashboard (its socket is "
                           "mode 0660)")
            continue
        where = reach.removeprefix("dashboard: http://").partition("/")[0]
        assert where.startswith("127.0.0.1:") and where != "127.0.0.1:0", reach
        assert who == (f"warning: every local account can open the dashboard on {where} (a "
                       "loopback port cannot tell users apart): set web.token to ask for a "
                       "login, or keep it to you and your group: trading web --listen PATH.sock")
