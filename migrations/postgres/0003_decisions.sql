-- The decision log (decisionlog/): one row per decision the engine made,
-- written in batches off the reply path by every daemon sharing this
-- database. Rows are facts, never updated; gc drops them after
-- decision_log.retention.
--
-- Partitioned by day (UTC) so retention is a DROP TABLE of whole days
-- instead of a DELETE that bloats the table and its indexes. The code
-- (decisionlog.EnsurePartitions) creates decisions_pYYYYMMDD a few days
-- ahead; decisions_default catches any row whose day has no partition yet
-- (a clock far off, a daemon that ran for days without gc), so no row is
-- ever refused.
CREATE TABLE decisions (
    time          timestamptz NOT NULL, -- when the request was decided (daemon clock)
    host          text NOT NULL DEFAULT '', -- which MX host decided
    client        inet,                     -- client_address; NULL if Postfix sent none
    client_name   text NOT NULL DEFAULT '', -- verified reverse name, "unknown" if none
    helo          text NOT NULL DEFAULT '',
    sender        text NOT NULL DEFAULT '', -- envelope sender as sent; '' is the null sender
    recipient     text NOT NULL DEFAULT '',
    instance      text NOT NULL DEFAULT '', -- Postfix's per-message id
    queue_id      text NOT NULL DEFAULT '',
    check_name    text NOT NULL DEFAULT '', -- the check that decided; '' when none was decisive
    action        text NOT NULL,            -- what Postfix was told, as on the wire after "action="
    would_action  text NOT NULL DEFAULT '', -- observe mode: what enforcing would have answered
    -- The decision reduced to one word for reports: the verb of
    -- would_action in observe mode, else of action. 4NN codes and
    -- DEFER_IF_PERMIT/DEFER_IF_REJECT are DEFER, 5NN codes are REJECT.
    verb          text NOT NULL CHECK (verb IN ('DUNNO', 'PREPEND', 'WARN', 'DEFER', 'REJECT')),
    reason        text NOT NULL DEFAULT '',
    delay_seconds integer NOT NULL DEFAULT 0, -- greylisting: how long a passing triplet was delayed
    duration_us   integer NOT NULL DEFAULT 0, -- time spent deciding
    observe       boolean NOT NULL DEFAULT false, -- computed but not enforced
    whitelist     text NOT NULL DEFAULT '', -- the whitelist entry that matched, '' if none
    errors        text NOT NULL DEFAULT ''  -- checks that failed, comma-separated ("dnsbl,spf")
) PARTITION BY RANGE (time);

CREATE TABLE decisions_default PARTITION OF decisions DEFAULT;

-- Time ranges (reports with --since, pruning the default partition). BRIN:
-- rows arrive in time order, so a few pages of summary do the work of a
-- B-tree at a fraction of its insert cost.
CREATE INDEX decisions_time_idx ON decisions USING brin (time);
-- "What happened to this client?" and the never-retried report, which looks
-- for a later pass of each deferred triplet.
CREATE INDEX decisions_client_idx ON decisions (client, time);

-- The reporting views are one text for both stores: shared/report_views.sql.
{{template "report_views.sql"}}
