-- The prediction log and outcome scoring (prediction service, issue 6).
-- Every prediction is stored with the inputs that produced it; outcomes are filled later by
-- evaluate_outcomes, one row per prediction and horizon (1 and 5 sessions).
CREATE TABLE IF NOT EXISTS predictions (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    symbol          TEXT NOT NULL,
    created_at      TEXT NOT NULL,                -- ISO 8601 UTC; sorts as text
    session         TEXT NOT NULL,                -- Sydney date of created_at (YYYY-MM-DD)
    action          TEXT NOT NULL CHECK (action IN ('BUY', 'SELL', 'HOLD')),
    confidence      REAL NOT NULL,
    score           REAL,
    price           REAL,
    market_context  TEXT,
    model_version   TEXT,
    data_stale      INTEGER NOT NULL DEFAULT 0,
    source          TEXT,                         -- market data source asked for (NULL: config)
    origin          TEXT NOT NULL DEFAULT 'live', -- 'live' or 'replay' (historical simulation)
    run_id          TEXT NOT NULL,                -- one generate_predictions call or one replay
    prediction      TEXT NOT NULL,                -- the prediction as returned (JSON)
    inputs          TEXT NOT NULL                 -- market, sentiment, model inputs (JSON)
);
CREATE INDEX IF NOT EXISTS predictions_by_symbol ON predictions (symbol, created_at);
CREATE INDEX IF NOT EXISTS predictions_by_time ON predictions (created_at);
CREATE INDEX IF NOT EXISTS predictions_by_run ON predictions (run_id);

CREATE TABLE IF NOT EXISTS outcomes (
    prediction_id   INTEGER NOT NULL REFERENCES predictions (id) ON DELETE CASCADE,
    horizon         INTEGER NOT NULL,             -- sessions after the base session
    base_session    TEXT NOT NULL,
    end_session     TEXT NOT NULL,
    base_close      REAL NOT NULL,
    end_close       REAL NOT NULL,
    forward_return  REAL NOT NULL,                -- end_close / base_close - 1
    index_return    REAL,                         -- the index over the same span (NULL: no bars)
    correct         INTEGER NOT NULL,             -- 1 when the action was right (see outcomes.py)
    evaluated_at    TEXT NOT NULL,
    PRIMARY KEY (prediction_id, horizon)
);
CREATE INDEX IF NOT EXISTS outcomes_by_horizon ON outcomes (horizon);
