"""One rule for where the store, caches, sockets and configuration are (issue 19): an
installed ``trading`` follows the install it belongs to (install.sh records it in the venv),
whoever runs it; root with a ``--user`` install uses the user's directories, and without
systemd a ``--user`` install never writes /var/lib/trading."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from trading import config

REPO = Path(__file__).resolve().parent.parent
USER = {"mode": "user", "home": "/home/alice", "uid": "1000", "XDG_CONFIG_HOME": "",
        "XDG_STATE_HOME": "", "XDG_CACHE_HOME": "", "XDG_RUNTIME_DIR": "/run/user/1000"}


def paths(cfg: config.Config) -> dict[str, str]:
    return {"config": str(cfg.path), "state": str(cfg.state_dir), "cache": str(cfg.cache_dir),
            "runtime": str(cfg.runtime_dir)}


@pytest.mark.parametrize("euid", [0, 1000, 1001])
def test_a_user_install_is_the_users_whoever_runs_it(monkeypatch, euid):
    monkeypatch.setattr(os, "geteuid", lambda: euid)
    cfg = config.load({"HOME": "/root" if euid == 0 else "/home/bob"}, install=USER)
    assert paths(cfg) == {"config": "/home/alice/.config/trading/config.toml",
                          "state": "/home/alice/.local/state/trading",
                          "cache": "/home/alice/.cache/trading",
                          "runtime": "/run/user/1000/trading"}


def test_a_user_install_finds_the_store_where_systemd_252_put_it(monkeypatch, tmp_path):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    legacy = tmp_path / ".config" / "trading"
    legacy.mkdir(parents=True)
    (legacy / "trading.db").write_bytes(b"")
    cfg = config.load({"HOME": "/root"}, install={**USER, "home": str(tmp_path)})
    assert cfg.db_path == legacy / "trading.db"


def test_the_recorded_xdg_directories_are_the_users(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    cfg = config.load({"HOME": "/root", "XDG_STATE_HOME": "/root/.st"},
                      install={**USER, "XDG_STATE_HOME": "/srv/alice/state",
                               "XDG_CONFIG_HOME": "/srv/alice/cfg"})
    assert cfg.state_dir == Path("/srv/alice/state/trading")
    assert cfg.path == Path("/srv/alice/cfg/trading/config.toml")


@pytest.mark.parametrize("euid", [0, 1000])
def test_a_system_install_is_the_systems_whoever_runs_it(monkeypatch, euid):
    monkeypatch.setattr(os, "geteuid", lambda: euid)
    cfg = config.load({"HOME": "/home/bob", "XDG_RUNTIME_DIR": "/run/user/1000"},
                      install={"mode": "system"})
    assert (cfg.state_dir, cfg.cache_dir, cfg.runtime_dir) == (
        Path("/var/lib/trading"), Path("/var/cache/trading"), Path("/run/trading"))


def test_settings_and_the_unit_directories_still_win(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    cfg = config.load({"HOME": "/root", "STATE_DIRECTORY": "/var/lib/x",
                       "TRADING_CACHE_DIR": "/tmp/c", "TRADING_CONFIG": "/tmp/none.toml"},
                      install=USER)
    assert (cfg.state_dir, cfg.cache_dir, cfg.path) == (
        Path("/var/lib/x"), Path("/tmp/c"), Path("/tmp/none.toml"))


def test_without_an_install_root_keeps_the_system_paths(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    cfg = config.load({"HOME": "/root"}, install=None)
    assert cfg.state_dir == Path("/var/lib/trading")


def test_the_record_is_read_from_the_venv(tmp_path):
    assert config.read_install(tmp_path) is None
    (tmp_path / "trading-install").write_text("mode=user\nhome=/home/alice\nXDG_STATE_HOME=\n")
    assert config.read_install(tmp_path) == {"mode": "user", "home": "/home/alice",
                                             "XDG_STATE_HOME": ""}
    (tmp_path / "trading-install").write_text("mode=nonsense\n")
    assert config.read_install(tmp_path) is None


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="runs the user's trading as root")
def test_root_running_a_user_install_without_systemd_uses_the_users_store(tmp_path):
    home = tmp_path / "alice"
    (tmp_path / "run").mkdir(mode=0o700)
    env = {"HOME": str(home), "XDG_RUNTIME_DIR": str(tmp_path / "run"), "LANG": "C.UTF-8",
           "PATH": "/usr/local/bin:/usr/bin:/bin"}
    subprocess.run([str(REPO / "install.sh"), "--user", "--deps-from", sys.prefix], env=env,
                   check=True, capture_output=True, timeout=300)
    trading = str(home / ".local/share/trading/venv/bin/trading")
    system_db = Path("/var/lib/trading/trading.db")
    before = system_db.stat().st_mtime_ns if system_db.exists() else None
    root = {"HOME": "/root", "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}  # sudo's environment
    shown = subprocess.run([trading, "config", "show", "--json"], env=root, capture_output=True,
                           text=True, timeout=120, check=True)
    where = json.loads(shown.stdout)["paths"]
    assert where["config_file"] == str(home / ".config/trading/config.toml")
    assert where["state_dir"].startswith(str(home)), where
    assert where["runtime_dir"] == str(tmp_path / "run" / "trading")
    done = subprocess.run([trading, "predict", "CBA", "--source", "sample"], env=root,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert Path(where["db_path"]).exists()
    assert (system_db.stat().st_mtime_ns if system_db.exists() else None) == before
