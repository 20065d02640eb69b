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

-- Reporting views, with the names and columns of the PostgreSQL store.
-- Days are UTC days ('YYYY-MM-DD'), times 'YYYY-MM-DD HH:MM:SS' UTC.

CREATE VIEW report_daily AS
SELECT date(time, 'unixepoch') AS day,
       count(*) AS requests,
       count(*) FILTER (WHERE NOT observe AND verb = 'DEFER') AS deferred,
       count(*) FILTER (WHERE NOT observe AND delay_seconds > 0
                        AND verb IN ('DUNNO', 'PREPEND', 'WARN')) AS passed_after_delay,
       count(*) FILTER (WHERE whitelist <> '') AS whitelisted,
       count(*) FILTER (WHERE NOT observe AND verb = 'REJECT' AND check_name = 'dnsbl') AS rejected_dnsbl,
       count(*) FILTER (WHERE NOT observe AND verb = 'REJECT' AND check_name = 'spf') AS rejected_spf,
       count(*) FILTER (WHERE NOT observe AND verb = 'REJECT'
                        AND check_name NOT IN ('dnsbl', 'spf')) AS rejected_other,
       count(*) FILTER (WHERE observe AND verb = 'REJECT') AS observe_would_reject,
       count(*) FILTER (WHERE observe AND verb = 'DEFER') AS observe_would_defer,
       count(*) FILTER (WHERE errors <> '') AS check_errors
FROM decisions
GROUP BY 1;

CREATE VIEW report_never_retried AS
WITH deferred AS (
    SELECT client, sender, recipient,
           min(time) AS first_deferred, max(time) AS last_deferred, count(*) AS deferrals,
           max(client_name) AS client_name, max(helo) AS helo
    FROM decisions
    WHERE NOT observe AND check_name = 'greylist' AND verb = 'DEFER'
    GROUP BY client, sender, recipient
)
SELECT d.client, d.client_name, d.helo, d.sender, d.recipient,
       datetime(d.first_deferred, 'unixepoch') AS first_deferred,
       datetime(d.last_deferred, 'unixepoch') AS last_deferred,
       d.deferrals
FROM deferred d
WHERE NOT EXISTS (
    SELECT 1 FROM decisions p
    WHERE p.client = d.client AND p.time > d.last_deferred
      AND p.sender = d.sender AND p.recipient = d.recipient
      AND NOT p.observe AND p.verb IN ('DUNNO', 'PREPEND', 'WARN'));

CREATE VIEW report_retry_delay AS
WITH passes AS (
    SELECT date(time, 'unixepoch') AS day, delay_seconds AS d
    FROM decisions
    WHERE NOT observe AND delay_seconds > 0 AND verb IN ('DUNNO', 'PREPEND', 'WARN')
), ranked AS (
    SELECT day, d,
           row_number() OVER (PARTITION BY day ORDER BY d) AS rn,
           count(*) OVER (PARTITION BY day) AS n
    FROM passes
)
SELECT day,
       count(*) AS passes,
       min(d) AS min_seconds,
       max(d) FILTER (WHERE rn = (n * 50 + 99) / 100) AS p50_seconds,
       max(d) FILTER (WHERE rn = (n * 90 + 99) / 100) AS p90_seconds,
       max(d) FILTER (WHERE rn = (n * 99 + 99) / 100) AS p99_seconds,
       max(d) AS max_seconds,
       CAST(round(avg(d)) AS integer) AS avg_seconds
FROM ranked
GROUP BY day;
