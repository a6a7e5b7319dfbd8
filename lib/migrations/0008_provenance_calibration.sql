-- Honest signals (issue 16): where each prediction's data came from, how old it was, and the
-- calibrated probability that it is right; and the rules' calibration records.
-- The kind of market source the prediction was made from: yahoo, csv or sample (synthetic);
-- `source` keeps the full spec (csv:/dir). Reports leave sample predictions out by default.
ALTER TABLE predictions ADD COLUMN data_source TEXT;
-- The session of the last bar the prediction saw (market-data's as_of; NULL: not reported).
ALTER TABLE predictions ADD COLUMN as_of TEXT;
-- The calibrated probability that the action is right after 1 and 5 sessions
-- (trading.signals.calibration); NULL: too little history to calibrate when it was made.
ALTER TABLE predictions ADD COLUMN probability_1 REAL;
ALTER TABLE predictions ADD COLUMN probability_5 REAL;
UPDATE predictions SET data_source = CASE
    WHEN source LIKE 'csv:%' THEN 'csv'
    WHEN source IN ('yahoo', 'sample') THEN source END;
UPDATE predictions SET as_of = substr(json_extract(inputs, '$.market.as_of'), 1, 10);
CREATE INDEX IF NOT EXISTS predictions_by_data_source ON predictions (data_source);

-- The rules' calibration: one row per fit, the newest is the one live predictions use. The
-- fitted numbers are JSON (a few logistic coefficients per horizon), read without sklearn.
CREATE TABLE IF NOT EXISTS calibrations (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at  TEXT NOT NULL,                -- UTC, ISO 8601
    kind        TEXT NOT NULL,                -- 'rules'
    source      TEXT,                         -- the outcomes it was fitted on (e.g. csv:/dir)
    fitted_on   INTEGER NOT NULL,             -- scored outcomes used
    through     TEXT,                         -- the last session whose outcome it saw
    record      TEXT NOT NULL                 -- JSON: trading.signals.calibration.RulesCalibration
);
CREATE INDEX IF NOT EXISTS calibrations_by_kind ON calibrations (kind, id);
