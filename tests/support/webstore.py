"""A real store with predictions in it, for the dashboard's tests.

The predictions are made the way the product makes them (the prediction service, in-process,
on the offline sample data), then one more call is recorded for CBA whose headline is hostile
markup, and a few outcomes are scored, so every page has rows to show.
"""

from __future__ import annotations

import json

HOSTILE = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'


def fill(cfg) -> dict:
    from trading.handlers import client
    from trading.runtime.store import Store
    from trading.signals import ledger, rules

    c = client(cfg, in_process="always")
    try:
        made = c.call("prediction", "generate_predictions",
                      {"symbols": ["CBA", "BHP", "NAB"], "source": "sample"})
    finally:
        c.close()
    store = Store(cfg.db_path)
    [row] = store.query("SELECT inputs FROM predictions WHERE symbol = 'CBA.AX'")
    inputs = json.loads(row["inputs"])
    inputs["sentiment"] = {**(inputs.get("sentiment") or {}), "headlines": [
        {"title": HOSTILE, "publisher": "<b>Evil</b> Wire", "published": "2026-11-26T01:00:00Z",
         "score": -0.5, "url": "javascript:alert(1)"}]}
    # Same time as the run, a later id: the latest CBA call (the order is time, then id).
    p = rules.decide(inputs["market"], inputs["sentiment"], None, cfg,
                     created_at=made["created_at"])
    p["symbol"] = "CBA.AX"
    p["reasons"].append(HOSTILE)
    ledger.record(store, [p], {"CBA.AX": inputs}, source="sample", run_id="hostile")
    # Outcomes for BHP's call, as the scorer would store them.
    [bhp] = store.query("SELECT id, session FROM predictions WHERE symbol = 'BHP.AX'")
    with store.transaction() as db:
        for horizon, ret in ((1, 0.012), (5, -0.021)):
            db.execute("INSERT INTO outcomes (prediction_id, horizon, base_session, end_session,"
                       " base_close, end_close, forward_return, index_return, correct,"
                       " evaluated_at) VALUES (?, ?, ?, ?, 10, ?, ?, 0.001, ?, '2026-11-27')",
                       (bhp["id"], horizon, bhp["session"], bhp["session"], 10 * (1 + ret), ret,
                        int(ret > 0)))
    store.close()
    return made
