-- Issue 27: a notification's target was Apprise's privacy=True form of its URL, which keeps
-- the path and the query (json://host/hook/TOKEN, ntfy://ntfy.sh/TOPIC, ...?token=) and the
-- first and last characters of tokens; `trading notify status` showed it. A row now holds the
-- URL's label (trading.ops.notify.mask_url: the scheme, a host and its port, `***` for the
-- rest). The URL itself is only in the configuration, so the rows already written cannot be
-- labelled again: they keep their scheme alone. Nothing here depends on this file's number.
UPDATE notifications SET target = CASE
    WHEN instr(target, '://') > 1 THEN substr(target, 1, instr(target, '://') + 2) || '***'
    ELSE '***' END;
