-- The scorecard over a million predictions (issue 26): `trading report` read every stored
-- prediction whole (about 2 kB of JSON each) to take two small fields out of it, and grouped
-- the runs of one session with a window over the whole table: 12.7 s over 92,011 predictions.
-- Those two fields become columns, and one covering index holds all the report reads of a
-- prediction, in the order it folds the runs of a session (trading.signals.outcomes.accuracy).

-- The predictor that made it (`$.predictor.name`; the rules before predictors were recorded,
-- as outcomes.PREDICTOR_SQL says) and the raw strength (`$.strength`; NULL before issue 16).
ALTER TABLE predictions ADD COLUMN predictor TEXT;
ALTER TABLE predictions ADD COLUMN strength REAL;
UPDATE predictions SET
    predictor = coalesce(json_extract(prediction, '$.predictor.name'),
                         'trading.signals.rules:predict'),
    strength = json_extract(prediction, '$.strength');

-- ledger.insert, the one writer of predictions, writes both with the JSON (still one INSERT
-- a prediction). The calibration's rewrite of a replay (calibration.walk_forward) sets
-- strength with the JSON it rewrites and never changes who made a call. (A trigger kept
-- them in step too, at the cost of a second UPDATE a row: it doubled a long replay's time.)

-- Everything the scorecard reads of a prediction, ordered as it reads them: one range per
-- origin, predictor and symbol, its sessions in order and each session's latest run first
-- (the one that counts; outcomes.latest_per_session). coalesce(data_source, '') is the
-- partition's own expression, so no sort is needed; data_source is there to cover it.
CREATE INDEX IF NOT EXISTS predictions_scored ON predictions (
    origin, predictor, symbol, session, coalesce(data_source, ''), created_at DESC, id DESC,
    action, confidence, probability_1, probability_5, strength, data_source);
-- And of an outcome: its row is found by (prediction_id, horizon) and read from the index.
CREATE INDEX IF NOT EXISTS outcomes_scored ON outcomes (
    prediction_id, horizon, end_session, correct, forward_return);
