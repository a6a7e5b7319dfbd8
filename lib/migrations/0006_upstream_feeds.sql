-- One upstream table for bars and news (trading.market.yahoo): news' Yahoo backoff moves here
-- from news_backoff, under its own upstream name, and follows the bars' policy. `feed` says
-- whose row it is, so each service's health reports its own last upstream call.
ALTER TABLE upstream ADD COLUMN feed TEXT NOT NULL DEFAULT 'bars';  -- bars, news
-- A news backoff running at upgrade time is kept (news_backoff held only Yahoo's 429s).
INSERT OR IGNORE INTO upstream (source, feed, at, outcome, message, backoff_until, failures)
    SELECT 'yahoo-news', 'news', until - 300, 'rate-limit', reason, until, 1
    FROM news_backoff WHERE source = 'yahoo';
DROP TABLE news_backoff;
