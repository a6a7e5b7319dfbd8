"""A test-only writer process for the shared store: the real ``ledger.record`` and
``events.append`` code, driven hard, so tests can race several of them or kill one mid-write.

``python -m support.store_writer DB MODE [ARGS]`` with ``tests/`` on ``PYTHONPATH``:

- ``contend SECONDS LOG``: for SECONDS, write predictions (each with its event, one
  transaction) and standalone events, in random order; after each commit append ``p ID`` or
  ``e ID`` to LOG (flushed), so the test knows exactly what was acknowledged.
- ``batches SIZE``: commit batches of SIZE predictions (one transaction each, one run id)
  forever, printing ``committed RUN_ID`` after each commit; the test kills it at random.
- ``hold SIZE DONE``: commit DONE batches, then stop inside the next ``record`` transaction,
  halfway through its rows, print ``mid RUN_ID`` and wait to be killed.
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

from trading.signals import events, ledger
from trading.errors import Busy
from trading.runtime.store import Store

SYMBOLS = ["CBA.AX", "ANZ.AX", "NAB.AX", "WBC.AX", "BHP.AX"]


def prediction(symbol: str) -> dict:
    return {"symbol": symbol, "created_at": events.now_iso(), "action": random.choice(
        ["BUY", "SELL", "HOLD"]), "confidence": round(random.random(), 4), "score": 0.5,
        "price": 100.0, "market_context": "NEUTRAL", "reasons": ["store writer"]}


def record(store: Store, size: int, inputs=None) -> str:
    run_id = ledger.new_run_id()
    made = [prediction(SYMBOLS[i % len(SYMBOLS)]) for i in range(size)]
    ledger.record(store, made, inputs if inputs is not None else {}, source="sample",
                  run_id=run_id)
    return run_id


class _StopHalfway(dict):
    """Inputs that stop the process inside ``record``'s transaction after ``after`` rows."""

    def __init__(self, after: int, run_note) -> None:
        super().__init__()
        self.after, self.seen, self.run_note = after, 0, run_note

    def get(self, key, default=None):
        self.seen += 1
        if self.seen > self.after:
            print(f"mid {self.run_note()}", flush=True)
            time.sleep(3600)
        return default


def contend(store: Store, seconds: float, log: Path) -> None:
    deadline = time.monotonic() + seconds
    busy = 0
    with log.open("a", buffering=1) as out:
        while time.monotonic() < deadline:
            try:
                if random.random() < 0.5:
                    made = [prediction(random.choice(SYMBOLS))]
                    written = ledger.record(store, made, {}, source="sample",
                                            run_id=ledger.new_run_id())
                    out.write(f"p {made[0]['id']} {written[0]['id']}\n")
                else:
                    with store.transaction() as db:
                        e = events.append(db, "store-writer", {"n": random.random()})
                    out.write(f"e {e['id']}\n")
            except Busy:
                busy += 1
                out.write("busy\n")
    print(json.dumps({"busy": busy}), flush=True)


def main(argv: list[str]) -> int:
    store = Store(argv[0])
    mode = argv[1]
    if mode == "contend":
        contend(store, float(argv[2]), Path(argv[3]))
    elif mode == "batches":
        size = int(argv[2])
        while True:
            print(f"committed {record(store, size)}", flush=True)
    elif mode == "hold":
        size, done = int(argv[2]), int(argv[3])
        for _ in range(done):
            print(f"committed {record(store, size)}", flush=True)
        # The run id is made inside record(); read it back from the open transaction.
        note = lambda: store.conn.execute(  # noqa: E731
            "SELECT run_id FROM predictions ORDER BY id DESC LIMIT 1").fetchone()[0]
        record(store, size, _StopHalfway(size // 2, note))
    else:
        raise SystemExit(f"unknown mode {mode}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
