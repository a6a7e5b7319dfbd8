"""A plugged predictor through socket activation, under the shipped sandboxing (issue 15).

``install.sh --user`` into a sandboxed systemd user manager (tests/sandbox.py); the example
monolith class, unchanged, is dropped into the predictors folder of the install's config
directory (``~/.config/trading/predictors/``, read-only to the services: ProtectHome=read-only,
ProtectSystem=strict) and named in its config.toml. The installed ``trading predict`` must go
through the prediction socket and the predictions it shows and stores must be the class's;
a broken predictor must come back as one line, and the service must live on.

The sandbox's commands and services run as root, whose default configuration file is the
system one, so ``TRADING_CONFIG`` names the user install's file for the manager (which its
services inherit) and for the command alike.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import statistics
import threading
import time
from pathlib import Path

import pytest
from sandbox import UserManager, sock
from support.wire import rpc

from conftest import REPO

pytestmark = [pytest.mark.systemd, pytest.mark.slow]

EXAMPLE = REPO / "examples" / "predictors" / "momentum.py"
MOMENTUM = "momentum:EnhancedMarketAwarePredictor"
SEVEN = ["CBA.AX", "ANZ.AX", "NAB.AX", "WBC.AX", "MQG.AX", "COL.AX", "BHP.AX"]


def configure(sd: UserManager, config: str, predictors: dict[str, Path | str],
              stop: tuple[str, ...] = ("prediction",)) -> tuple[Path, dict[str, str]]:
    """The install's config.toml written with ``config`` and its predictors folder given
    ``predictors`` (file name -> a file to copy, or its source), the services' manager told to
    read that config and ``stop`` services stopped (the next call starts them on it):
    ``(config.toml, env for the CLI)``."""
    conf_dir = sd.home / ".config" / "trading"
    (conf_dir / "predictors").mkdir(parents=True, exist_ok=True)
    for name, source in predictors.items():
        if isinstance(source, Path):
            shutil.copy(source, conf_dir / "predictors" / name)
        else:
            (conf_dir / "predictors" / name).write_text(source)
    conf = conf_dir / "config.toml"
    conf.write_text(config)
    sd.systemctl("set-environment", f"TRADING_CONFIG={conf}")
    for name in stop:
        sd.systemctl("stop", f"trading-{name}.service", check=False)
    return conf, {"TRADING_CONFIG": str(conf)}


def test_the_example_predictor_runs_in_the_socket_activated_sandboxed_service(installed):
    sd: UserManager = installed
    conf, env = configure(sd, f'predictor = "{MOMENTUM}"\n', {"momentum.py": EXAMPLE},
                          stop=("prediction", "market-data", "sentiment"))
    conf_dir = conf.parent
    # The unit that runs it reads the home directory read-only and the rest of the system too.
    unit = sd.show("trading-prediction.service", "ProtectHome", "ProtectSystem")
    assert unit == {"ProtectHome": "read-only", "ProtectSystem": "strict"}

    trading = str(sd.home / ".local/bin/trading")
    out = sd.run(trading, "predict", "--source", "sample", "--json", env=env, timeout=120)
    assert "in-process" not in out.stderr, out.stderr
    body = json.loads(out.stdout)
    assert body["predictor"] == {
        "name": MOMENTUM, "form": "monolith", "version": "1.0",
        "file": str(conf_dir / "predictors" / "momentum.py"),
        "sha256": hashlib.sha256(EXAMPLE.read_bytes()).hexdigest()}
    assert list(body["results"]) == SEVEN and not body["errors"]
    assert all(" market" in p["reasons"][0] for p in body["results"].values())
    pid = sd.main_pid("prediction")
    assert pid  # started by its socket, and running the predictor
    health = json.loads(sd.run(trading, "call", "prediction", "health_check", env=env).stdout)
    assert health["pid"] == pid and health["predictor"]["name"] == MOMENTUM
    assert health["predictor"]["import_ms"] >= 0

    history = json.loads(sd.run(trading, "history", "--json", env=env).stdout)
    assert {p["predictor"]["name"] for p in history} == {MOMENTUM} and len(history) == 7
    table = sd.run(trading, "predict", "CBA", "--source", "sample", env=env)
    assert MOMENTUM in table.stdout
    status = sd.run(trading, "status", env=env, check=False)
    assert status.returncode == 0, status.stdout + status.stderr
    assert f"predictor {MOMENTUM}" in status.stdout

    # A broken predictor: one line from predict, and the service answers on.
    (conf_dir / "predictors" / "broken.py").write_text("import numpy_but_misspelt\n")
    conf.write_text('predictor = "broken:Predictor"\n')
    sd.systemctl("stop", "trading-prediction.service")
    bad = sd.run(trading, "predict", "CBA", "--source", "sample", env=env, check=False)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    [line] = bad.stderr.splitlines()
    assert "broken:Predictor" in line and "numpy_but_misspelt" in line
    assert str(conf_dir / "predictors" / "broken.py") in line
    health = json.loads(sd.run(trading, "call", "prediction", "health_check", env=env).stdout)
    assert health["status"] == "ok" and health["predictor"]["ok"] is False
    assert sd.show("trading-prediction.service", "ActiveState")["ActiveState"] == "active"


PROBE = '''"""A predictor that tries to change what runs it (issue 27), and says how far it got."""
import json
import os
import socket

MARKER = {marker!r}
try:  # the command that imports it outside the service leaves a trace; the service cannot
    with open(MARKER + "-" + str(os.getpid()), "w") as f:
        f.write("imported")
except OSError:
    pass


def _try(what, fn):
    try:
        fn()
        return what + ": done"
    except OSError as exc:
        return what + ": " + type(exc).__name__


def _connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    finally:
        s.close()


def predict(*, symbol, market, sentiment, model, config):
    conf = {conf!r}
    reasons = [
        _try("config", lambda: open(conf, "a").write("# planted")),
        _try("new config", lambda: os.replace(conf, conf + ".moved")),
        _try("predictors", lambda: open({planted!r}, "w").write("x = 1")),
        _try("manager", lambda: _connect({private!r})),
    ]
    return {{"action": "HOLD", "confidence": 0.5, "reasons": reasons}}
'''


def plant_probe(sd: UserManager):
    """PROBE in the install's predictors folder, named in its config.toml, the prediction
    service stopped: ``(conf, folder, env, trading, config text before)``."""
    conf_dir = sd.home / ".config" / "trading"
    # install.sh made both, so the units' ReadOnlyPaths= cover them
    conf, folder = conf_dir / "config.toml", conf_dir / "predictors"
    assert conf.is_file() and folder.is_dir()
    private = sd.runtime_dir / "systemd" / "private"
    assert private.exists()
    (folder / "probe.py").write_text(PROBE.format(
        marker=str(sd.root / "probe-imported"), conf=str(conf),
        planted=str(folder / "planted.py"), private=str(private)))
    before = 'predictor = "probe:predict"\n'
    conf.write_text(before)
    sd.systemctl("set-environment", f"TRADING_CONFIG={conf}")
    sd.systemctl("stop", "trading-prediction.service", check=False)
    return conf, folder, {"TRADING_CONFIG": str(conf)}, str(sd.home / ".local/bin/trading"), \
        before


def assert_contained(reasons: list[str]) -> None:
    """What PROBE tried, from its reasons: it could not change what runs it nor reach the
    user manager."""
    tried = dict(r.split(": ", 1) for r in reasons if ": " in r)
    assert tried["config"] in ("OSError", "PermissionError"), tried  # EROFS / EACCES
    assert tried["new config"] != "done" and tried["predictors"] != "done", tried
    assert tried["manager"] in ("PermissionError", "ConnectionRefusedError",
                                "FileNotFoundError"), tried


def test_a_planted_predictor_cannot_change_what_runs_it_nor_reach_its_manager(installed):
    sd: UserManager = installed
    conf, folder, env, trading, before = plant_probe(sd)
    try:
        # The read-only commands have the service import it: never this process.
        for command in (("status",), ("config", "show")):
            out = sd.run(trading, *command, env=env, check=False)
            assert "predictor probe:predict" in out.stdout, out.stdout + out.stderr
        assert not list(sd.root.glob("probe-imported-*")), "a command imported the predictor"

        out = sd.run(trading, "predict", "CBA", "--source", "sample", "--json", env=env,
                     timeout=120)
        [p] = json.loads(out.stdout)["results"].values()
        assert_contained(p["reasons"])
        assert conf.read_text() == before and not (folder / "planted.py").exists()
        assert not list(sd.root.glob("probe-imported-*"))
    finally:
        conf.write_text("")
        sd.systemctl("stop", "trading-prediction.service", check=False)


def test_a_replay_runs_a_plugged_predictor_in_the_service_never_in_the_command(installed):
    """Issue 27: `trading replay` reads the trader's folder in the command's process, and it
    started a plugged predictor there too, in a child of the command: outside every sandbox,
    where it could rewrite config.toml and reach the user manager. Now the command prepares
    the sessions and the prediction service answers them (run_predictor), in its sandbox."""
    sd: UserManager = installed
    conf, folder, env, trading, before = plant_probe(sd)
    try:
        out = sd.run(trading, "replay", str(REPO / "tests" / "data" / "asx-daily"),
                     "--symbol", "CBA", "--start", "2025-06-02", "--end", "2025-06-27",
                     "--json", env=env, timeout=180)
        body = json.loads(out.stdout)
        assert body["predictor"]["name"] == "probe:predict" and body["predictions"] == 19, body  # 20 weekdays, one holiday
        assert "in-process" not in out.stderr, out.stderr
        assert not list(sd.root.glob("probe-imported-*")), "the command imported the predictor"
        assert sd.main_pid("prediction"), "the prediction service ran it"
        rows = json.loads(sd.run(trading, "history", "--origin", "replay", "--predictor",
                                 "probe", "--json", env=env).stdout)
        assert len(rows) == 19, rows
        for row in rows:
            assert_contained(row["reasons"])
        assert conf.read_text() == before and not (folder / "planted.py").exists()
    finally:
        conf.write_text("")
        sd.systemctl("stop", "trading-prediction.service", check=False)


GREEDY = '''"""A predictor that will not stop, and one answer of 6 MB (issue 27)."""


def predict(*, symbol, market, sentiment, model, config):
    if symbol == "BHP.AX":
        sum(range(10 ** 13))  # one C call that never gives the GIL back (hours)
    if symbol == "CBA.AX":
        return {"action": "BUY", "confidence": 0.6, "reason": "x" * 6_000_000}
    return {"action": "HOLD", "confidence": 0.5}
'''


def test_a_predictor_holding_the_gil_is_stopped_and_a_huge_answer_is_cut(installed):
    """Issue 27: a predictor inside one long C call held the GIL, and the installed service
    answered nothing, health_check included, until the watchdog killed it about 60 s later; a
    6 MB field was stored whole and broke `trading history` for everyone. Now the call ends at
    the budget with the symbols done, health_check answers throughout, the service keeps its
    PID (no watchdog kill), and the stored row is bounded."""
    sd: UserManager = installed
    conf, env = configure(sd, 'predictor = "greedy:predict"\npredictor_timeout = 3\n',
                          {"greedy.py": GREEDY})
    path = sock(sd, "prediction")
    trading = str(sd.home / ".local/bin/trading")
    try:
        pid = rpc(path, "health_check")["result"]["pid"]
        restarts = sd.show("trading-prediction.service", "NRestarts")["NRestarts"]
        took: list[float] = []
        done = threading.Event()

        def watch():
            while not done.is_set():
                t0 = time.monotonic()
                assert rpc(path, "health_check", timeout=30)["result"]["status"] == "ok"
                took.append(time.monotonic() - t0)
                time.sleep(0.2)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            t0 = time.monotonic()
            out = sd.run(trading, "predict", "CBA", "BHP", "ANZ", "--source", "sample",
                         "--json", env=env, check=False, timeout=120)
            call = time.monotonic() - t0
        finally:
            done.set()
            watcher.join(30)
        body = json.loads(out.stdout)
        assert list(body["results"]) == ["CBA.AX"], out.stdout[:2000] + out.stderr
        assert body["results"]["CBA.AX"]["cut"]["from_bytes"] > 6_000_000
        assert "its process was stopped" in body["errors"]["BHP.AX"]["message"]
        assert "used up the 3s budget" in body["errors"]["ANZ.AX"]["message"]
        assert len(took) >= 5 and max(took) < 1.0, took
        assert rpc(path, "health_check")["result"]["pid"] == pid
        assert sd.show("trading-prediction.service", "NRestarts")["NRestarts"] == restarts

        history = sd.run(trading, "history", "--json", env=env)
        rows = json.loads(history.stdout)
        assert "CBA.AX" in {r["symbol"] for r in rows}
        assert max(len(json.dumps(r)) for r in rows) < 64 << 10
        assert sd.run(trading, "history", env=env).returncode == 0
        print(f"\ngreedy predictor: call {call:.1f}s (budget 3 s); health_check during it "
              f"p50 {statistics.median(took) * 1000:.1f} ms, max {max(took) * 1000:.1f} ms; "
              f"largest stored row {max(len(json.dumps(r)) for r in rows)} bytes")
    finally:
        conf.write_text("")
        sd.systemctl("stop", "trading-prediction.service", check=False)
