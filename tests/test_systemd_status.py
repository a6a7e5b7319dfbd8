"""``trading status`` without a manager, and how systemd's answers are read and put in words.

The real manager is in tests/test_systemd.py; here the text is what ``systemctl show`` prints
(systemd 252), fed to the parser, and the CLI on a machine where no systemd answers.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from trading.ops import systemd
from trading.cli.main import app

SHOW = """\
Id=trading-market-data.socket
LoadState=loaded
ActiveState=active
SubState=listening
Result=success
Listen=/run/user/1000/trading/market-data.sock (Stream)

Id=trading-prediction.socket
LoadState=loaded
ActiveState=failed
SubState=failed
Result=service-start-limit-hit
Listen=/run/user/1000/trading/prediction.sock (Stream)
"""


def test_parse_show_splits_units_at_blank_lines():
    blocks = systemd.parse_show(SHOW)
    assert [b["Id"] for b in blocks] == ["trading-market-data.socket",
                                          "trading-prediction.socket"]
    assert blocks[1]["Result"] == "service-start-limit-hit"
    assert systemd.listen_path(blocks[0]["Listen"]) == "/run/user/1000/trading/market-data.sock"


@pytest.mark.parametrize("props, scope, words, ok", [
    ({"LoadState": "loaded", "ActiveState": "active"}, "user", "listening", True),
    ({"LoadState": "loaded", "ActiveState": "failed", "Result": "service-start-limit-hit"},
     "user", "start limit hit; run systemctl --user reset-failed trading-x.socket "
     "trading-x.service && systemctl --user start trading-x.socket", False),
    ({"LoadState": "loaded", "ActiveState": "failed", "Result": "service-start-limit-hit"},
     "system", "start limit hit; run systemctl reset-failed trading-x.socket trading-x.service "
     "&& systemctl start trading-x.socket", False),
    ({"LoadState": "loaded", "ActiveState": "failed", "Result": "trigger-limit-hit"}, "system",
     "trigger limit hit (started too often); run systemctl reset-failed trading-x.socket && "
     "systemctl start trading-x.socket", False),
    ({"LoadState": "loaded", "ActiveState": "inactive"}, "user",
     "stopped; run trading start", False),
    ({"LoadState": "not-found", "ActiveState": "inactive"}, "user", "not installed", False),
])
def test_socket_states_in_words(props, scope, words, ok):
    m = systemd.Manager(scope, Path("/nonexistent"))
    assert systemd.describe_socket(m, "trading-x.socket", props) == (words, ok)


@pytest.mark.parametrize("props, words", [
    ({"ActiveState": "active", "SubState": "running"}, "active"),
    ({"ActiveState": "inactive", "SubState": "dead"}, "inactive"),
    ({"ActiveState": "failed", "Result": "signal", "ExecMainStatus": "9", "ExecMainCode": "2"},
     "failed (signal, signal 9)"),
    ({"ActiveState": "failed", "Result": "exit-code", "ExecMainStatus": "1", "ExecMainCode": "1"},
     "failed (exit-code, status 1)"),
    ({"ActiveState": "activating", "SubState": "start"}, "starting"),
])
def test_service_states_in_words(props, words):
    assert systemd.describe_service(props) == words


@pytest.mark.skipif(os.path.isdir("/run/systemd/system"),
                    reason="this machine runs systemd: tests/test_systemd.py covers status there")
def test_status_says_when_there_is_no_systemd(monkeypatch, tmp_path):
    # A HOME without an install and a runtime dir where no user manager listens.
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    assert systemd.detect() == (None, False)
    r = CliRunner().invoke(app, ["status"])
    assert r.exit_code == 0
    assert r.output.strip() == ("systemd is not running here: `trading` commands run the "
                                "handlers in-process")
    r = CliRunner().invoke(app, ["status", "--json"])
    report = json.loads(r.output)
    assert report["systemd"] is None and report["services"] == []


@pytest.mark.skipif(os.path.isdir("/run/systemd/system"),
                    reason="this machine runs systemd: tests/test_systemd.py covers status there")
def test_status_with_units_but_no_manager_says_both(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    units = tmp_path / ".config/systemd/user"
    units.mkdir(parents=True)
    (units / "trading.target").write_text("[Unit]\n")
    assert systemd.detect() == (None, True)
    r = CliRunner().invoke(app, ["status"])
    assert r.exit_code == 0
    assert "the units are installed but their manager is not running" in r.output


class _ShownManager(systemd.Manager):
    """A manager whose ``systemctl show`` answers are given, for reading them into rows."""

    def __init__(self, answers: dict[str, dict[str, str]]) -> None:
        super().__init__("user", Path("/nonexistent"))
        object.__setattr__(self, "answers", answers)

    def show(self, units, props):
        return {u: self.answers[u] for u in units if u in self.answers}


def _service(pid: int, memory: str) -> dict[str, str]:
    return {"Id": "trading-sentiment.service", "LoadState": "loaded", "ActiveState": "active",
            "SubState": "running", "MainPID": str(pid), "MemoryCurrent": memory}


def test_memory_is_the_cgroup_figure_when_systemd_accounts_it():
    m = _ShownManager({"trading-sentiment.service": _service(os.getpid(), "52428800")})
    [row] = systemd.service_rows(m, ["sentiment"])
    assert (row.memory_bytes, row.memory_source) == (52428800, "cgroup")


def test_memory_falls_back_to_the_handlers_rss_without_accounting():
    # cgroup v1 with no memory hierarchy for the manager: systemd reports "[not set]"
    m = _ShownManager({"trading-sentiment.service": _service(os.getpid(), "[not set]")})
    [row] = systemd.service_rows(m, ["sentiment"])
    own_rss = systemd.process_rss(os.getpid())
    assert row.memory_source == "rss"
    assert own_rss and row.memory_bytes and 0.5 < row.memory_bytes / own_rss < 2


def test_no_memory_for_an_idle_handler_or_a_vanished_pid():
    idle = _ShownManager({"trading-sentiment.service": _service(0, "[not set]")})
    [row] = systemd.service_rows(idle, ["sentiment"])
    assert (row.pid, row.memory_bytes, row.memory_source) == (None, None, None)
    finished = subprocess.Popen(["true"])
    finished.wait()
    gone = finished.pid
    m = _ShownManager({"trading-sentiment.service": _service(gone, "[not set]")})
    [row] = systemd.service_rows(m, ["sentiment"])
    assert (row.memory_bytes, row.memory_source) == (None, None)


def test_a_listening_socket_whose_file_was_deleted_is_not_ok(tmp_path):
    """systemd still holds the socket, but no client can reach it by its path: `trading
    status` used to say "listening"."""
    import socket as _socket

    path = tmp_path / "sentiment.sock"
    live = _socket.socket(_socket.AF_UNIX)
    live.bind(str(path))
    sock = {"Id": "trading-sentiment.socket", "LoadState": "loaded", "ActiveState": "active",
            "SubState": "listening", "Listen": f"{path} (Stream)"}
    try:
        m = _ShownManager({"trading-sentiment.socket": sock})
        [row] = systemd.service_rows(m, ["sentiment"])
        assert row.socket == "listening" and row.ok
        path.unlink()
        [row] = systemd.service_rows(m, ["sentiment"])
        assert not row.ok
        assert row.socket.startswith(f"socket file {path} is missing")
        assert "systemctl --user restart trading-sentiment.socket" in row.socket
    finally:
        live.close()
