-- Core schema: the event log every service appends to (ordered, durable).
-- Schema numbers are assigned per component: 0002 bars (market-data), 0003 news (sentiment),
-- 0004 predictions and outcomes (prediction), 0005 models (training).
CREATE TABLE IF NOT EXISTS events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    type        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    payload     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_type ON events (type, id);
