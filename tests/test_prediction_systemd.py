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
