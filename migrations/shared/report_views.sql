{{/*
The reporting views, one text for both stores: List renders it with the
store's dialect, so the names, columns and rules are the same on both.
Two things differ, and are written as calls:
  {{day "col"}}  the UTC day of a time column: a date on PostgreSQL,
                 'YYYY-MM-DD' text on SQLite, whose times are Unix seconds;
  {{utc "col"}}  a time column as the view shows it: timestamptz as it is
                 on PostgreSQL, 'YYYY-MM-DD HH:MM:SS' UTC text on SQLite.
  {{hourBefore "col"}} the instant an hour before a time column, in the
                 column's own type.
  {{createView}} CREATE OR REPLACE VIEW on PostgreSQL, so a migration can
                 include this file again over the views (same columns) and
                 views of the administrator's own on them stay; CREATE VIEW
                 on SQLite, where a migration drops them first.
A pass is what Postfix accepted: DUNNO, PREPEND, WARN, or HOLD (accepted
into the hold queue, by a rate limit after greylisting's pass).
*/ -}}
-- Reporting views: the same names and columns on both stores. Days are
-- UTC days.

-- Per day: what the daemons answered. Observe-mode rows count only in
-- requests, whitelisted, check_errors and the observe_* columns, since
-- nothing was enforced for them.
{{createView}} report_daily AS
SELECT {{day "time"}} AS day,
       count(*) AS requests,
       count(*) FILTER (WHERE NOT observe AND verb = 'DEFER') AS deferred,
       count(*) FILTER (WHERE NOT observe AND delay_seconds > 0
                        AND verb IN ('DUNNO', 'PREPEND', 'WARN', 'HOLD')) AS passed_after_delay,
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
--
-- A message greylisting deferred at DATA (greylist.stage: data) has a
-- DATA row with no recipient when it had several: Postfix gives the
-- recipient at DATA only when one was accepted (Postfix SMTPD_POLICY_README,
-- "recipient"). Its recipients are those its RCPT rows accepted: the rows
-- of the same message (host, instance) from the same client and sender,
-- at most an hour before.
--
-- The retries are found in one pass over the decisions, each row looked
-- up in the deferred triplets (retried): the deferred set is the small
-- side, and SQLite, whose one table has no index by client (keeping one
-- up row by row was most of what storing a decision cost it), indexes it
-- on the fly. CROSS JOIN makes SQLite scan the decisions in the outer loop
-- (sqlite.org/optoverview.html, "Manual Control Of Query Plans Using CROSS
-- JOIN"); PostgreSQL treats it as the inner join it is.
{{createView}} report_never_retried AS
WITH deferral AS (
    SELECT time, client, sender, recipient, client_name, helo
    FROM decisions
    WHERE NOT observe AND check_name = 'greylist' AND verb = 'DEFER' AND recipient <> ''
    UNION ALL
    SELECT m.time, m.client, m.sender, r.recipient, m.client_name, m.helo
    FROM decisions m
    JOIN decisions r
      ON r.time <= m.time AND r.time >= {{hourBefore "m.time"}}
     AND r.client = m.client AND r.host = m.host AND r.instance = m.instance AND r.sender = m.sender
     AND r.recipient <> '' AND NOT r.observe AND r.verb IN ('DUNNO', 'PREPEND', 'WARN', 'HOLD')
    WHERE NOT m.observe AND m.check_name = 'greylist' AND m.verb = 'DEFER'
      AND m.recipient = '' AND m.instance <> ''
), deferred AS MATERIALIZED (
    SELECT client, sender, recipient,
           min(time) AS first_deferred, max(time) AS last_deferred, count(*) AS deferrals,
           max(client_name) AS client_name, max(helo) AS helo
    FROM deferral
    GROUP BY client, sender, recipient
), retried AS MATERIALIZED (
    SELECT DISTINCT d.client, d.sender, d.recipient
    FROM decisions p CROSS JOIN deferred d
    WHERE p.client = d.client AND p.sender = d.sender AND p.recipient = d.recipient
      AND p.time > d.last_deferred
      AND NOT p.observe AND p.verb IN ('DUNNO', 'PREPEND', 'WARN', 'HOLD')
)
SELECT d.client, d.client_name, d.helo, d.sender, d.recipient,
       {{utc "d.first_deferred"}} AS first_deferred,
       {{utc "d.last_deferred"}} AS last_deferred,
       d.deferrals
FROM deferred d
WHERE NOT EXISTS (
    SELECT 1 FROM retried r
    WHERE r.client = d.client AND r.sender = d.sender AND r.recipient = d.recipient);

-- Per day: how long legitimate senders took to come back, over the
-- greylisting passes that had been delayed. Percentiles are nearest-rank
-- (the value at rank ceil(p/100 * n)), computed with integer arithmetic
-- so both stores give the same numbers.
{{createView}} report_retry_delay AS
WITH passes AS (
    SELECT {{day "time"}} AS day, delay_seconds AS d
    FROM decisions
    WHERE NOT observe AND delay_seconds > 0 AND verb IN ('DUNNO', 'PREPEND', 'WARN', 'HOLD')
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
