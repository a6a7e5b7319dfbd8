-- The bar cache is bounded (issue 14): at most cache.max_series series per source, the least
-- recently used evicted at write time (bars are re-fetchable; predictions are never touched).
-- last_used is when a request last needed the series (refreshed at most hourly), so a series
-- read every day outlives one fetched once by a bulk request.
ALTER TABLE bar_series ADD COLUMN last_used REAL NOT NULL DEFAULT 0;
UPDATE bar_series SET last_used = fetched_at;
CREATE INDEX IF NOT EXISTS bar_series_last_used ON bar_series (source, interval, last_used);
