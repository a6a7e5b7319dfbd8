-- Issue 30: every dashboard view shows one stream of predictions: its origin (live, replay),
-- predictor and kind of data (yahoo, csv, sample). The pages list the streams stored and, per
-- stream, each symbol's latest call; over predictions_scored (origin, predictor, symbol, ...)
-- the kind of data sits after the session, so finding which kinds exist read every row (2 s a
-- page over a million predictions). With this index each of those answers is a few seeks
-- (trading.web.streams). Nothing depends on it for correctness: a store without it answers
-- the same, slower.
CREATE INDEX IF NOT EXISTS predictions_by_stream ON predictions (
    origin, predictor, coalesce(data_source, ''), symbol, created_at);
