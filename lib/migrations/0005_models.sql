-- Trained models (issue 7). One row per trained version, the fitted parameters live in a JSON
-- file under <state_dir>/models/ (path below), so a prediction loads a few numbers and never
-- imports scikit-learn. At most one row is active: the partial unique index enforces it.
CREATE TABLE IF NOT EXISTS models (
    version     TEXT PRIMARY KEY,
    created_at  TEXT NOT NULL,                -- UTC, ISO 8601
    kind        TEXT NOT NULL,                -- e.g. logistic-regression
    symbols     TEXT NOT NULL,                -- JSON array of the symbols trained on
    features    TEXT NOT NULL,                -- JSON array of feature names, in model order
    horizon     INTEGER NOT NULL CHECK (horizon >= 1),
    train_start TEXT NOT NULL,                -- first session in the final fit
    train_end   TEXT NOT NULL,                -- last session whose price the fit saw (labels too)
    source      TEXT NOT NULL,                -- where the bars came from
    metrics     TEXT NOT NULL,                -- JSON: out-of-sample scores and baselines
    path        TEXT NOT NULL,                -- the fitted model file
    active      INTEGER NOT NULL DEFAULT 0 CHECK (active IN (0, 1))
);
CREATE UNIQUE INDEX IF NOT EXISTS models_one_active ON models (active) WHERE active = 1;
CREATE INDEX IF NOT EXISTS models_by_created ON models (created_at);
