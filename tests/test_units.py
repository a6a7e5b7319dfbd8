"""Static checks of units/ against the registry and the pitfalls that defeat socket activation.

No manager is needed: the units are rendered by ``install.sh --render-units`` exactly as an
install would, then read as INI text and checked with ``systemd-analyze verify`` and
``systemd-analyze security --offline=true``. tests/test_systemd.py runs them for real.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from support.units import exposure, render_units

from trading.handlers import HTTP_SERVICES, SERVICES, SOCKET_SERVICES

REPO = Path(__file__).resolve().parent.parent
UNITS = REPO / "units"
EXPOSURE_TARGETS = {"market-data": 2.5, "sentiment": 2.5, "prediction": 1.5, "training": 1.5,
                    # the jobs that send alerts after the service commits (issue 17)
                    "predict": 2.5, "outcomes": 2.5}
NETWORKED = {"market-data", "sentiment"}


def directives(path: Path) -> list[tuple[str, str, str]]:
    """``(section, key, value)`` for every directive, in order (keys may repeat)."""
    section, out = "", []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.append((section, key.strip(), value.strip()))
    return out


def values(path: Path, key: str) -> list[str]:
    return [v for _, k, v in directives(path) if k == key]


def one(path: Path, key: str) -> str:
    found = values(path, key)
    assert len(found) == 1, f"{path.name}: expected one {key}=, found {found}"
    return found[0]


def test_every_registered_service_has_a_socket_and_a_service():
    sockets = {p.stem for p in UNITS.glob("trading-*.socket")}
    assert sockets == {f"trading-{n}" for n in SOCKET_SERVICES}
    for n in SOCKET_SERVICES:
        assert (UNITS / f"trading-{n}.service").exists()
    # Any other service is a scheduled job: it has a timer and no socket.
    for p in UNITS.glob("trading-*.service"):
        if p.stem not in sockets:
            assert (UNITS / f"{p.stem}.timer").exists(), f"{p.name} has neither socket nor timer"


@pytest.mark.parametrize("name", list(SERVICES))
def test_socket_unit(name):
    u = UNITS / f"trading-{name}.socket"
    assert one(u, "ListenStream") == f"%t/trading/{name}.sock"
    assert one(u, "Accept") == "no"
    assert one(u, "SocketMode") == "0660"
    assert one(u, "@system@SocketGroup") == "trading"


@pytest.mark.parametrize("name", list(SERVICES))
def test_service_unit(name):
    u = UNITS / f"trading-{name}.service"
    module = SERVICES[name]
    assert one(u, "Type") == "notify"
    # The console script, a Python file run by the venv's python through its #! line (exec:
    # the same PID, so LISTEN_PID holds; a shell wrapper that forked would break it). It
    # skips python -m's runpy, about 5 ms of every activation.
    assert one(u, "ExecStart") == f"@VENV@/bin/trading-{name}"
    assert module.startswith("trading.handlers.")
    if name == "web":  # uvicorn does not answer the queued connections when it cannot start
        assert one(u, "Restart") == "on-failure"
        assert int(one(u, "StartLimitBurst")) >= 5
    else:  # no start limit: the socket's trigger limit stops a tight crash loop
        assert one(u, "Restart") == "no" and one(u, "StartLimitIntervalSec") == "0"
        assert values(u, "StartLimitBurst") == []
    assert re.fullmatch(r"\d+[MG]", one(u, "MemoryMax"))
    assert re.fullmatch(r"\d+%", one(u, "CPUQuota"))
    assert one(u, "StateDirectory") == "trading"
    assert one(u, "CacheDirectory") == "trading"
    assert values(u, "RuntimeDirectory") == []  # it would delete the socket dir (systemd #8635)
    assert values(u, "DynamicUser") == []       # cannot own a socket file (systemd #23067)
    assert one(u, "@system@User") == "trading"
    assert one(u, "ProtectHome") == "@PROTECT_HOME@"
    families = one(u, "RestrictAddressFamilies").split()
    if name in NETWORKED:
        assert families == ["AF_UNIX", "AF_INET", "AF_INET6"]
    else:
        assert families == ["AF_UNIX"] and one(u, "PrivateNetwork") == "yes"


@pytest.mark.parametrize("path", sorted(UNITS.glob("trading*")), ids=lambda p: p.name)
def test_non_obvious_directives_carry_a_comment(path):
    """Each directive whose reason is not obvious has a comment line right above it (or above
    the block it starts)."""
    needs = {"Accept", "SocketMode", "RemoveOnStop", "TriggerLimitIntervalSec", "ExecStart",
             "Restart", "StartLimitIntervalSec", "WatchdogSec", "TimeoutStopSec",
             "StateDirectory", "Environment", "MemoryHigh", "ProtectHome",
             "MemoryDenyWriteExecute", "RestrictAddressFamilies", "PartOf", "WantedBy",
             "ListenStream"}
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        key = line.partition("=")[0]
        if key in needs:
            j = i - 1
            while j >= 0 and lines[j] and not lines[j].startswith("#") \
                    and not lines[j].startswith("["):
                j -= 1  # a comment may head a small block of related directives
            assert j >= 0 and lines[j].startswith("#"), f"{path.name}: {key}= has no comment"


def test_web_units(rendered):
    """The dashboard: a Unix socket in the runtime directory by default, kept to its owner and
    group (for a system install, trading:trading), the same runtime rules as the JSON-RPC
    services, and no network of its own (the passed socket is all it serves)."""
    assert set(HTTP_SERVICES) == {"web"}
    sock, svc = UNITS / "trading-web.socket", UNITS / "trading-web.service"
    assert one(sock, "ListenStream") == "@WEB_LISTEN@"
    for mode in ("user", "system"):
        web = rendered[mode] / "trading-web.socket"
        assert one(web, "ListenStream") == "%t/trading/web.sock"
        assert one(web, "SocketMode") == "0660"
    system = rendered["system"] / "trading-web.socket"
    assert (one(system, "SocketUser"), one(system, "SocketGroup")) == ("trading", "trading")
    assert one(sock, "Accept") == "no"
    # The console script, as for the JSON-RPC services (trading.web.__main__:run).
    assert one(svc, "ExecStart") == "@VENV@/bin/trading-web"
    assert one(svc, "Type") == "notify" and one(svc, "Restart") == "no"
    assert one(svc, "StartLimitIntervalSec") == "0"  # normal starts never fail the socket
    assert one(svc, "PrivateNetwork") == "yes"
    assert one(svc, "RestrictAddressFamilies") == "AF_UNIX"
    assert values(svc, "RuntimeDirectory") == [] and values(svc, "DynamicUser") == []
    assert one(svc, "@system@User") == "trading"


def test_install_renders_another_web_address(tmp_path):
    render_units("user", tmp_path, options=["--web-listen", "/srv/proxy/web.sock"])
    assert one(tmp_path / "trading-web.socket", "ListenStream") == "/srv/proxy/web.sock"


def test_target_pulls_in_every_socket():
    wants = one(UNITS / "trading.target", "Wants").split()
    assert sorted(wants) == sorted(f"trading-{n}.socket" for n in SOCKET_SERVICES)


def test_system_and_user_renderings_differ_only_where_they_must(rendered):
    allowed = {"User", "Group", "SocketUser", "SocketGroup", "ProtectHome", "WantedBy",
               "ExecStart"}
    for unit in sorted(p.name for p in rendered["system"].iterdir()):
        sys_d = set(directives(rendered["system"] / unit))
        usr_d = set(directives(rendered["user"] / unit))
        differing = {k for _, k, _ in sys_d ^ usr_d}
        assert differing <= allowed, (unit, differing)
        for mode in ("system", "user"):
            unrendered = [d for d in directives(rendered[mode] / unit)
                          if re.search(r"@[A-Za-z_]+@", "".join(d))]
            assert unrendered == [], f"unrendered placeholder in {mode} {unit}"
    svc = "trading-market-data.service"
    assert one(rendered["system"] / svc, "User") == "trading"
    assert values(rendered["user"] / svc, "User") == []
    assert one(rendered["user"] / svc, "ProtectHome") == "read-only"


def test_systemd_analyze_verify_is_silent_on_the_system_units(rendered):
    """(The --user rendering needs a user manager: tests/test_systemd.py verifies it there.)"""
    units = sorted(str(p) for p in rendered["system"].iterdir())
    r = subprocess.run(["systemd-analyze", "verify", *units], capture_output=True, text=True)
    assert (r.returncode, r.stdout + r.stderr) == (0, "")


# Every service unit in units/, the timers' jobs included: whatever is added later is held to a
# target too (1.5 unless it is one of the two that need the network).
ALL_SERVICES = sorted(p.name[len("trading-"):-len(".service")]
                      for p in UNITS.glob("trading-*.service"))


@pytest.mark.parametrize("mode", ["system", "user"])
@pytest.mark.parametrize("name", ALL_SERVICES)
def test_security_exposure_within_target(rendered, mode, name):
    level = exposure(rendered[mode] / f"trading-{name}.service")
    print(f"{mode} trading-{name}.service exposure {level}")
    assert level <= EXPOSURE_TARGETS.get(name, 1.5)


def test_install_sh_is_valid_bash():
    subprocess.run(["bash", "-n", str(REPO / "install.sh")], check=True)
