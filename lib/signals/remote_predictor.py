"""A plugged predictor that runs in the prediction service, for a command that prepares its
jobs itself (``trading replay``).

A replay reads the trader's folder in the command's own process (the installed services
may not be allowed to see it), and it used to start the predictor there too, in a child of
the command: outside every sandbox, so a predictor could rewrite ``config.toml`` or start an
unsandboxed unit through the user manager (issue 27). Now the command only asks: each chunk
of jobs (:data:`trading.signals.predictors.CHUNK`) goes to the prediction service's
``run_predictor``, which runs the predictor in its own warm, killable child inside the
service's sandbox and answers with the checked predictions. The command never imports the
trader's code.

Without systemd the same call runs the prediction handler in the command's process (the
client's in-process fallback), which runs the predictor in a child process of its own, as
everything does there: no sandbox exists to run it in.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from trading.errors import PredictorUnavailable

JSON = dict[str, Any]
SERVICE = "prediction"
GRACE_S = 30.0  # beyond the predictor's budget: the service's own queue, a cold start


class RemotePredictor:
    """A predictor's face (``name``, ``form``, ``provenance``, ``describe()``, ``close()``)
    over a :class:`trading.runtime.client.Client`; :func:`trading.signals.predictors.run`
    hands a batch to :meth:`run_remote`."""

    isolated = True

    def __init__(self, client: Any, spec: str) -> None:
        self.client = client
        self.name = spec
        self.form = ""
        self.provenance: JSON = {"name": spec}
        self.import_s = 0.0
        self.lock = threading.Lock()
        self.busy_since: float | None = None

    def start(self, timeout: float) -> RemotePredictor:
        """Have the service import it and say what it is (PredictorUnavailable, one line,
        when it cannot)."""
        info = self.client.call(SERVICE, "check_predictor", {"predictor": self.name},
                                timeout=timeout + GRACE_S)
        if not isinstance(info, dict) or info.get("ok") is False:
            error = info.get("error") if isinstance(info, dict) else None
            raise PredictorUnavailable(str(error or f"predictor {self.name}: the prediction "
                                           "service could not load it"), predictor=self.name)
        self.form = str(info.get("form") or "native")
        self.provenance = {k: info.get(k) for k in ("name", "form", "file", "sha256", "version")}
        self.import_s = float(info.get("import_ms") or 0.0) / 1000
        return self

    def describe(self) -> JSON:
        return {**self.provenance, "ok": True, "import_ms": round(self.import_s * 1000, 1)}

    def close(self) -> None:
        """The service keeps its child warm for the next call; nothing to release here."""

    def run_remote(self, jobs: Sequence[Any], budget: float
                   ) -> tuple[dict[str, JSON], dict[str, JSON]]:
        """One chunk of jobs answered by the service: ``(results, errors)`` by job key."""
        answer = self.client.call(SERVICE, "run_predictor", {
            "predictor": self.name,
            "jobs": [{"symbol": j.symbol, "key": j.key, "market": j.market,
                      "sentiment": j.sentiment, "model": j.model} for j in jobs]},
            timeout=budget + GRACE_S)
        return dict(answer.get("results") or {}), dict(answer.get("errors") or {})
