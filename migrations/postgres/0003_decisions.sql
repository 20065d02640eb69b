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

-- Reporting views. The SQLite store has the same names and columns.
-- Days are UTC days, like the partitions.

-- Per day: what the daemons answered. Observe-mode rows count only in
-- requests, whitelisted and the observe_* columns, since nothing was
-- enforced for them.
CREATE VIEW report_daily AS
SELECT (time AT TIME ZONE 'UTC')::date AS day,
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

-- Triplets (exact client address, sender, recipient) that greylisting
-- deferred and that never passed afterwards: mostly spam engines that do
-- not retry, sometimes a legitimate sender that retries from another pool
-- or with a new VERP sender (greylisting's own key is wider than this
-- one, so such a sender passed but still shows here).
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
       d.first_deferred, d.last_deferred, d.deferrals
FROM deferred d
WHERE NOT EXISTS (
    SELECT 1 FROM decisions p
    WHERE p.client = d.client AND p.time > d.last_deferred
      AND p.sender = d.sender AND p.recipient = d.recipient
      AND NOT p.observe AND p.verb IN ('DUNNO', 'PREPEND', 'WARN'));

-- Per day: how long legitimate senders took to come back, over the
-- greylisting passes that had been delayed. Percentiles are nearest-rank
-- (the value at rank ceil(p/100 * n)), computed with integer arithmetic
-- so SQLite gives the same numbers.
CREATE VIEW report_retry_delay AS
WITH passes AS (
    SELECT (time AT TIME ZONE 'UTC')::date AS day, delay_seconds AS d
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
