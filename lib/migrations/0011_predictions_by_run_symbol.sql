-- A replay replaces its earlier predictions of a symbol's sessions one (run_id, symbol,
-- session) at a time; with only the run_id index each delete scanned the whole run, so a
-- replay's cost grew with the square of its length (8 s of a 40 s replay of two long
-- histories). This index replaces predictions_by_run: its first column serves the same
-- lookups by run_id.
CREATE INDEX IF NOT EXISTS predictions_by_run_symbol ON predictions (run_id, symbol, session);
DROP INDEX IF EXISTS predictions_by_run;
