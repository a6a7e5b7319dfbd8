"""Configuration: defaults < TOML file < TRADING_* variables, and errors that name the key."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from trading import config
from trading.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults_then_file_then_environment(tmp_path):
    f = write(tmp_path / "c.toml", 'idle_exit = 12\nsymbols = ["CBA.AX"]\n[weights]\ntechnical = 0.5\n')
    cfg = config.load({"TRADING_IDLE_EXIT": "7.5"}, f)
    assert cfg["idle_exit"] == 7.5 and cfg.source_of("idle_exit") == "env TRADING_IDLE_EXIT"
    assert cfg["symbols"] == ["CBA.AX"] and cfg.source_of("symbols") == str(f)
    assert cfg["weights.technical"] == 0.5 and cfg.source_of("weights.technical") == str(f)
    assert cfg["max_connections"] == 16 and cfg.source_of("max_connections") == "default"


def test_list_values_from_the_environment_split_on_commas_and_spaces(tmp_path):
    cfg = config.load({"TRADING_SYMBOLS": "CBA.AX, BHP.AX NAB.AX"}, tmp_path / "none.toml")
    assert cfg["symbols"] == ["CBA.AX", "BHP.AX", "NAB.AX"]


@pytest.mark.parametrize("text,needle", [
    ("idle_exit = 'soon'\n", "idle_exit"),
    ("idle_exit = -1\n", "greater than 0"),
    ("[threshold]\nneutral = 1.5\n", "threshold.neutral"),
    ("no_such_key = 1\n", "unknown key 'no_such_key'"),
    ("idle_exit = \n", "cannot read configuration"),
])
def test_a_bad_file_value_names_the_key_and_the_file(tmp_path, text, needle):
    f = write(tmp_path / "c.toml", text)
    with pytest.raises(ConfigError) as info:
        config.load({}, f)
    assert needle in str(info.value) and str(f) in str(info.value)


def test_a_bad_environment_value_names_the_variable(tmp_path):
    with pytest.raises(ConfigError, match="TRADING_MAX_CONNECTIONS"):
        config.load({"TRADING_MAX_CONNECTIONS": "many"}, tmp_path / "none.toml")


def test_a_file_that_is_not_utf8_is_a_config_error(tmp_path):
    f = tmp_path / "c.toml"
    f.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="cannot read configuration"):
        config.load({}, f)


@pytest.mark.parametrize("variable", ["TRADING_IN_PROCESS", "TRADING_LOG_LEVEL"])
def test_words_outside_the_choices_are_refused(tmp_path, variable):
    with pytest.raises(ConfigError, match=f"{variable}.*expected one of"):
        config.load({variable: "bogus"}, tmp_path / "none.toml")
    assert config.load({"TRADING_LOG_LEVEL": "debug"}, tmp_path / "none.toml")["log_level"] \
        == "DEBUG"


def test_paths_follow_the_install(tmp_path):
    cfg = config.load({"STATE_DIRECTORY": "/var/lib/x", "CACHE_DIRECTORY": "/var/cache/x"},
                      tmp_path / "none.toml")
    assert cfg.state_dir == Path("/var/lib/x") and cfg.db_path == Path("/var/lib/x/trading.db")
    cfg = config.load({"TRADING_RUNTIME_DIR": "/tmp/r"}, tmp_path / "none.toml")
    assert cfg.socket_path("market-data") == Path("/tmp/r/market-data.sock")


def test_config_show_through_the_cli(tmp_path, monkeypatch):
    from trading.cli.main import app

    write(Path(os.environ["TRADING_CONFIG"]), 'idle_exit = 9\nredis_url = "redis://u:hunter2@localhost:6379/0"\n')
    monkeypatch.setenv("TRADING_TIMEOUT", "3")
    config.reset()
    result = CliRunner().invoke(app, ["config", "show", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    rows = {r["key"]: r for r in data["settings"]}
    assert rows["idle_exit"]["value"] == 9 and rows["idle_exit"]["source"].endswith("config.toml")
    assert rows["timeout"]["source"] == "env TRADING_TIMEOUT"
    assert "hunter2" not in result.stdout and rows["redis_url"]["value"] == "redis://u:***@localhost:6379/0"
    table = CliRunner().invoke(app, ["config", "show"])
    assert table.exit_code == 0 and "idle_exit" in table.stdout and "hunter2" not in table.stdout


def test_a_bad_value_is_one_line_and_exit_2_from_the_cli(tmp_path):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "trading.cli.main", "config", "show"],
                         env=dict(os.environ, TRADING_IDLE_EXIT="abc"), capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip().startswith("trading: error: idle_exit = 'abc'")
    assert "Traceback" not in out.stderr and out.stderr.strip().count("\n") == 0


def test_a_user_store_where_systemd_252_puts_it_is_found(tmp_path, monkeypatch):
    if os.geteuid() == 0:
        monkeypatch.setattr(os, "geteuid", lambda: 1000)
    env = {"XDG_STATE_HOME": str(tmp_path / "state"), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    cfg = config.load(env, tmp_path / "none.toml")
    assert cfg.state_dir == tmp_path / "state" / "trading"  # nothing yet: systemd >= 254's place
    write(tmp_path / "cfg" / "trading" / "trading.db", "")   # a 252 user unit's StateDirectory=
    assert cfg.state_dir == tmp_path / "cfg" / "trading"
    write(tmp_path / "state" / "trading" / "trading.db", "")
    assert cfg.state_dir == tmp_path / "state" / "trading"


def test_root_uses_its_user_managers_sockets_only_without_a_system_install(tmp_path):
    cfg = config.load({"XDG_RUNTIME_DIR": str(tmp_path)}, tmp_path / "none.toml")
    if os.geteuid() != 0:
        assert cfg.runtime_dir == tmp_path / "trading"
        return
    assert cfg.runtime_dir == Path("/run/trading")  # no user install's sockets either
    (tmp_path / "trading").mkdir()
    if not Path("/run/trading").exists():
        assert cfg.runtime_dir == tmp_path / "trading"


def test_a_home_that_cannot_be_expanded_is_a_config_error_not_a_relative_folder():
    from trading.config import load
    from trading.errors import ConfigError

    cfg = load({"TRADING_STATE_DIR": "~no-such-user-here/s", "HOME": "/nonexistent"},
               path="/nonexistent/config.toml", install=None)
    with pytest.raises(ConfigError, match="state_dir = '~no-such-user-here/s': cannot expand"):
        cfg.db_file
