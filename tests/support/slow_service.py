"""A test-only service: methods that sleep, echo and crash, to drive the runtime's edges.

Run as ``python -m support.slow_service`` with ``tests/`` on ``PYTHONPATH``.
"""

from __future__ import annotations

import os
import time

from trading.runtime.activation import run
from trading.runtime.protocol import rpc
from trading.runtime.service import Service


class Slow(Service):
    name = "slow"

    @rpc
    def sleep(self, seconds: float = 0.1) -> dict:
        """Sleep, then answer with this process's PID."""
        time.sleep(float(seconds))
        return {"slept": seconds, "pid": os.getpid()}

    @rpc
    def echo(self, value=None):
        """Return the value."""
        return value

    @rpc(positional=True)
    def add(self, a: float, b: float) -> float:
        """Add two numbers (accepts positional params)."""
        return a + b

    @rpc
    def boom(self) -> None:
        """Raise an unexpected exception (a bug)."""
        raise RuntimeError("boom")

    @rpc
    def until_cancelled(self, seconds: float = 10.0) -> dict:
        """Work in small steps until the client hangs up (or ``seconds`` pass)."""
        deadline = time.monotonic() + float(seconds)
        steps = 0
        while time.monotonic() < deadline and not self.cancelled:
            time.sleep(0.01)
            steps += 1
        self.outcome = {"cancelled": self.cancelled, "steps": steps}
        return self.outcome

    @rpc
    def die(self) -> None:
        """Kill this process mid-request."""
        os._exit(7)


SERVICE = Slow

if __name__ == "__main__":
    raise SystemExit(run(SERVICE))
