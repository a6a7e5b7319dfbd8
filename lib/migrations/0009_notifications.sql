-- The alert outbox (issue 17). A prediction's event is written in the same transaction as the
-- prediction (ledger.record), so the events table is the durable "something happened" record;
-- these tables track delivering it to each configured Apprise URL. Nothing here depends on
-- this file's number (IF NOT EXISTS throughout), so it can be renumbered when branches merge.
--
-- One row per message and URL. The URL itself is never stored (it holds tokens and
-- passwords): url_hash identifies it, target is Apprise's privacy=True form for people.
CREATE TABLE IF NOT EXISTS notifications (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    kind            TEXT NOT NULL CHECK (kind IN ('prediction', 'digest')),
    ref             TEXT NOT NULL,        -- the prediction event's id, or the digest's Sydney date
    url_hash        TEXT NOT NULL,        -- sha256 of the URL, hex
    target          TEXT NOT NULL,        -- the URL with its secrets masked
    symbol          TEXT,
    title           TEXT NOT NULL,
    body            TEXT NOT NULL,        -- plain text
    markdown        TEXT NOT NULL,        -- the same in Markdown, for services that render it
    status          TEXT NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'sending', 'sent', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,   -- counted when claimed, before the send
    created_at      TEXT NOT NULL,
    next_attempt_at TEXT NOT NULL,        -- a pending row is not tried before this
    claimed_at      TEXT,                 -- when the current 'sending' claim was taken
    claim           TEXT,                 -- which process holds it (a random token)
    sent_at         TEXT,
    last_error      TEXT,                 -- redacted
    UNIQUE (kind, ref, url_hash)          -- one message per prediction (or day) and URL, ever
);
CREATE INDEX IF NOT EXISTS notifications_due ON notifications (status, next_attempt_at);

-- Per URL: the last prediction event already considered. A URL seen for the first time starts
-- at the run that saw it (no flood of old predictions when alerts are switched on).
CREATE TABLE IF NOT EXISTS notify_cursors (
    url_hash        TEXT PRIMARY KEY,
    after_event_id  INTEGER NOT NULL,
    since           TEXT NOT NULL
);
