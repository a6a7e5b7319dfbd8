-- What the reader of a local file decided (issue 26): rows dropped and why, sessions kept,
-- gaps, the adjustment used; JSON from trading.market.reading.read_csv, NULL for a source
-- that is not a file (Yahoo, sample). Written with the series, so get_bars can show it
-- from the cache. Nothing here depends on this file's number, so it can be renumbered when
-- branches merge.
ALTER TABLE bar_series ADD COLUMN reading TEXT;
