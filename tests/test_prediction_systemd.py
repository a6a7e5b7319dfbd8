"""The main job on a real install: `trading predict` through systemd-activated services.

``install.sh --user`` into a sandboxed systemd user manager (tests/sandbox.py); then the
installed `trading predict --source sample` must go through the prediction socket (no
in-process notice), systemd must start all three handlers on demand, and the predictions must
be stored where the installed services keep their state.
"""

from __future__ import annotations

import json

import pytest
from sandbox import UserManager

pytestmark = [pytest.mark.systemd, pytest.mark.slow]

SEVEN = ["CBA.AX", "ANZ.AX", "NAB.AX", "WBC.AX", "MQG.AX", "COL.AX", "BHP.AX"]


def test_trading_predict_goes_through_the_socket_activated_services(installed):
    sd: UserManager = installed
    for name in ("prediction", "market-data", "sentiment"):
        sd.systemctl("stop", f"trading-{name}.service", check=False)
    out = sd.trading("predict", "--source", "sample", "--json", timeout=120)
    assert "in-process" not in out.stderr, out.stderr
    body = json.loads(out.stdout)
    assert list(body["results"]) == SEVEN
    assert all(p["components"]["sentiment"] is not None for p in body["results"].values())
    # systemd started each handler on demand: three running units, three processes.
    pids = {name: sd.main_pid(name) for name in ("prediction", "market-data", "sentiment")}
    assert all(pids.values()) and len(set(pids.values())) == 3, pids

    table = sd.trading("predict", "CBA", "--source", "sample")
    assert "CBA.AX" in table.stdout and table.returncode == 0
    history = json.loads(sd.trading("history", "--json").stdout)
    assert [p["symbol"] for p in history][:1] == ["CBA.AX"] and len(history) == 8
    events = sd.trading("events", "--type", "prediction", "-n", "100", "--json").stdout
    assert len(events.splitlines()) == 8
    report = sd.trading("report")  # sample (synthetic) predictions are left out by default
    assert report.returncode == 0 and "8 from synthetic sample data left out" in report.stdout
    report = sd.trading("report", "--include-sample")
    assert report.returncode == 0 and "predictions stored: 8 live" in report.stdout


def test_overrides_a_changed_configuration_and_stopped_services_on_a_real_install(installed):
    """Issue 30 on the real units: TRADING_PREDICTOR and --predictor for one command reach the
    socket-activated service (the title names the predictor that ran); a predictor outside the
    owner's folder is refused in one line; `trading status` says when a running handler
    loaded an older configuration than the file, until `trading restart`; and `history`,
    `report` and `explain` read the store once `trading stop` stopped the services."""
    import shutil
    from pathlib import Path

    sd: UserManager = installed
    momentum = "momentum:EnhancedMarketAwarePredictor"
    example = Path(__file__).resolve().parent.parent / "examples/predictors/momentum.py"
    conf_dir = sd.home / "issue30"
    (conf_dir / "predictors").mkdir(parents=True, exist_ok=True)
    shutil.copy(example, conf_dir / "predictors" / "momentum.py")
    conf = conf_dir / "config.toml"
    conf.write_text("idle_exit = 300\n")  # the rules, configured; handlers stay up meanwhile
    env = {"TRADING_CONFIG": str(conf)}
    sd.systemctl("set-environment", f"TRADING_CONFIG={conf}")
    try:
        for name in ("prediction", "market-data", "sentiment"):
            sd.systemctl("stop", f"trading-{name}.service", check=False)

        one = sd.run(str(sd.home / ".local/bin/trading"), "predict", "CBA", "--source",
                     "sample", "--json", env={**env, "TRADING_PREDICTOR": momentum},
                     timeout=120)
        assert "in-process" not in one.stderr, one.stderr
        assert json.loads(one.stdout)["predictor"]["name"] == momentum
        table = sd.run(str(sd.home / ".local/bin/trading"), "predict", "BHP", "--source",
                       "sample", "--predictor", momentum, env=env, timeout=120)
        assert f"predictor {momentum}" in table.stdout.splitlines()[0]
        assert "its conf." in table.stdout and "P(right)" not in table.stdout
        bad = sd.run(str(sd.home / ".local/bin/trading"), "predict", "CBA", "--source",
                     "sample", "--predictor", "os:getcwd", env=env, check=False)
        assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
        assert "a call may choose the built-in rules or a predictor in" in bad.stderr
        said = sd.run(str(sd.home / ".local/bin/trading"), "explain", "CBA", "--predictor",
                      "momentum", env=env).stdout
        assert "its confidence" in said and "None" not in said

        status = sd.run(str(sd.home / ".local/bin/trading"), "status", env=env)
        assert "older configuration" not in status.stdout, status.stdout
        conf.write_text("idle_exit = 300\n# changed\n")
        status = sd.run(str(sd.home / ".local/bin/trading"), "status", "--json", env=env)
        older = {o["service"] for o in json.loads(status.stdout)["older_config"]}
        assert {"prediction", "market-data"} <= older, status.stdout
        text = sd.run(str(sd.home / ".local/bin/trading"), "status", env=env).stdout
        assert f"with an older configuration than {conf}" in text
        assert "`trading restart`" in text
        sd.run(str(sd.home / ".local/bin/trading"), "restart", env=env)
        text = sd.run(str(sd.home / ".local/bin/trading"), "status", env=env).stdout
        assert "older configuration" not in text, text

        sd.run(str(sd.home / ".local/bin/trading"), "stop", env=env)
        # As a trader's shell has it (the sandbox's commands default to never in-process).
        env["TRADING_IN_PROCESS"] = "auto"
        try:
            history = sd.run(str(sd.home / ".local/bin/trading"), "history", "--all",
                             "--json", env=env)
            rows = json.loads(history.stdout)
            assert {p["stream"]["predictor"] for p in rows} >= {momentum}
            assert "reading the store directly (read-only)" in history.stderr
            shown = sd.run(str(sd.home / ".local/bin/trading"), "history", env=env)
            assert "the live stream of rules" in shown.stdout
            assert "--predictor momentum" in shown.stdout  # the other stream, named
            report = sd.run(str(sd.home / ".local/bin/trading"), "report", "--include-sample",
                            env=env)
            assert "predictions stored:" in report.stdout
            assert sd.run(str(sd.home / ".local/bin/trading"), "explain", "CBA",
                          env=env).returncode == 0
        finally:
            sd.run(str(sd.home / ".local/bin/trading"), "start", env=env)
    finally:
        sd.systemctl("unset-environment", "TRADING_CONFIG")
