-- The decision log (decisionlog/): one row per decision the engine made,
-- written in batches off the reply path. Rows are facts, never updated; gc
-- deletes them after decision_log.retention, a few thousand rows per
-- statement so the daemon's own writes are never held up for long.
-- Times are Unix seconds (UTC), as in the other tables of this store.
CREATE TABLE decisions (
    time          INTEGER NOT NULL,          -- when the request was decided (daemon clock)
    host          TEXT NOT NULL DEFAULT '',  -- which MX host decided
    client        TEXT NOT NULL DEFAULT '',  -- client_address; '' if Postfix sent none
    client_name   TEXT NOT NULL DEFAULT '',  -- verified reverse name, "unknown" if none
    helo          TEXT NOT NULL DEFAULT '',
    sender        TEXT NOT NULL DEFAULT '',  -- envelope sender as sent; '' is the null sender
    recipient     TEXT NOT NULL DEFAULT '',
    instance      TEXT NOT NULL DEFAULT '',  -- Postfix's per-message id
    queue_id      TEXT NOT NULL DEFAULT '',
    check_name    TEXT NOT NULL DEFAULT '',  -- the check that decided; '' when none was decisive
    action        TEXT NOT NULL,             -- what Postfix was told, as on the wire after "action="
    would_action  TEXT NOT NULL DEFAULT '',  -- observe mode: what enforcing would have answered
    -- The decision reduced to one word for reports: the verb of
    -- would_action in observe mode, else of action. 4NN codes and
    -- DEFER_IF_PERMIT/DEFER_IF_REJECT are DEFER, 5NN codes are REJECT.
    verb          TEXT NOT NULL CHECK (verb IN ('DUNNO', 'PREPEND', 'WARN', 'DEFER', 'REJECT')),
    reason        TEXT NOT NULL DEFAULT '',
    delay_seconds INTEGER NOT NULL DEFAULT 0, -- greylisting: how long a passing triplet was delayed
    duration_us   INTEGER NOT NULL DEFAULT 0, -- time spent deciding
    observe       INTEGER NOT NULL DEFAULT 0 CHECK (observe IN (0, 1)), -- computed but not enforced
    whitelist     TEXT NOT NULL DEFAULT '',  -- the whitelist entry that matched, '' if none
    errors        TEXT NOT NULL DEFAULT ''   -- checks that failed, comma-separated ("dnsbl,spf")
);

-- Time ranges: reports with --since, and retention.
CREATE INDEX decisions_time_idx ON decisions (time);
-- "What happened to this client?" and the never-retried report.
CREATE INDEX decisions_client_idx ON decisions (client, time);

-- The reporting views are one text for both stores: shared/report_views.sql.
{{template "report_views.sql"}}
