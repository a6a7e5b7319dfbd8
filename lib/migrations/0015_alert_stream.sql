-- Issue 30: alerts and the digest come from the live job stream only, and a symbol's alert is
-- the net change of a run against the last alert *sent* for it (trading.signals.alerts).
--
-- alert_runs: the prediction runs that feed alerts and the digest: `trading job predict`
-- (kind 'job') and `trading predict --notify` (kind 'notify'). A hand-run `trading predict`
-- or a replay is never here, so it is shown, never queued for a later job.
CREATE TABLE IF NOT EXISTS alert_runs (
    run_id      TEXT PRIMARY KEY,     -- predictions.run_id
    kind        TEXT NOT NULL CHECK (kind IN ('job', 'notify')),
    predictor   TEXT,                 -- the predictor the service ran (its provenance name)
    created_at  TEXT NOT NULL
);

-- The outbox again, with three more columns and one more status. SQLite cannot change a CHECK
-- constraint in place, so the table is rebuilt (same rows, same ids).
--   call          the call a prediction alert told (BUY, SELL or HOLD): the next run's baseline
--   prediction_id the prediction it told of (a withdrawal says what changed since)
--   notify_type   Apprise's message type: info, warning (SELL, a withdrawal), ...
--   'superseded'  a message still waiting when a newer run spoke for the symbol: never sent
CREATE TABLE notifications_new (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    kind            TEXT NOT NULL CHECK (kind IN ('prediction', 'digest')),
    ref             TEXT NOT NULL,
    url_hash        TEXT NOT NULL,
    target          TEXT NOT NULL,
    symbol          TEXT,
    title           TEXT NOT NULL,
    body            TEXT NOT NULL,
    markdown        TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'superseded')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_at      TEXT NOT NULL,
    next_attempt_at TEXT NOT NULL,
    claimed_at      TEXT,
    claim           TEXT,
    sent_at         TEXT,
    last_error      TEXT,
    call            TEXT,
    prediction_id   INTEGER,
    notify_type     TEXT NOT NULL DEFAULT 'info',
    UNIQUE (kind, ref, url_hash)
);
INSERT INTO notifications_new (id, kind, ref, url_hash, target, symbol, title, body, markdown,
    status, attempts, created_at, next_attempt_at, claimed_at, claim, sent_at, last_error)
    SELECT id, kind, ref, url_hash, target, symbol, title, body, markdown, status, attempts,
           created_at, next_attempt_at, claimed_at, claim, sent_at, last_error
    FROM notifications;
DROP TABLE notifications;
ALTER TABLE notifications_new RENAME TO notifications;
CREATE INDEX IF NOT EXISTS notifications_due ON notifications (status, next_attempt_at);
CREATE INDEX IF NOT EXISTS notifications_by_symbol ON notifications (url_hash, symbol, kind, id);

-- The alerts sent before: their call is the title's first word ("BUY CBA.AX (was HOLD)"), their
-- prediction the one their event (ref) named.
UPDATE notifications SET
    call = CASE WHEN instr(title, ' ') > 1 THEN substr(title, 1, instr(title, ' ') - 1) END,
    prediction_id = (SELECT json_extract(e.payload, '$.id') FROM events e
                     WHERE e.id = CAST(notifications.ref AS INTEGER))
    WHERE kind = 'prediction';

-- Planning walked the events after a cursor per URL; it now plans each job run's own
-- predictions, so the cursors are no longer read.
DROP TABLE IF EXISTS notify_cursors;
