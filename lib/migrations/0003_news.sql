-- News headlines (sentiment service). One row per headline id, whatever the source and however
-- many symbols it is about, so a headline fetched again is updated, never duplicated.
-- published/fetched_at are Unix seconds (UTC); score is cached with the scorer version that
-- computed it and recomputed when the version changes.
CREATE TABLE IF NOT EXISTS news (
    id          TEXT PRIMARY KEY,
    title       TEXT NOT NULL,
    publisher   TEXT NOT NULL DEFAULT '',
    published   INTEGER NOT NULL,
    url         TEXT NOT NULL DEFAULT '',
    score       REAL,
    scorer      TEXT,
    fetched_at  INTEGER NOT NULL
);
-- Which symbols a headline is about, per source (a headline can be about several symbols).
CREATE TABLE IF NOT EXISTS news_symbols (
    symbol  TEXT NOT NULL,
    source  TEXT NOT NULL,
    id      TEXT NOT NULL REFERENCES news (id) ON DELETE CASCADE,
    PRIMARY KEY (symbol, source, id)
) WITHOUT ROWID;
-- The last fetch per symbol and source: a fresh one is served from the cache without asking.
CREATE TABLE IF NOT EXISTS news_fetches (
    symbol      TEXT NOT NULL,
    source      TEXT NOT NULL,
    fetched_at  INTEGER NOT NULL,
    items       INTEGER NOT NULL,
    PRIMARY KEY (symbol, source)
) WITHOUT ROWID;
-- A source that told us to back off (Yahoo's 429): no fetches before `until` (Unix seconds),
-- shared by every process that opens the store.
CREATE TABLE IF NOT EXISTS news_backoff (
    source  TEXT PRIMARY KEY,
    until   INTEGER NOT NULL,
    reason  TEXT NOT NULL
);
