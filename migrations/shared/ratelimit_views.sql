{{/*
The rate-limit reporting view, one text for both stores (included by each
kind's 0004_ratelimit.sql). It reads the rule from the reason the check
gives when a rule decides (ratelimit/ratelimit.go, reasonRate and
reasonNetworks: "<rule>: over its limit", "<rule>: too many networks"),
with substr and length only, which both stores spell alike.
{{createView}} is CREATE OR REPLACE VIEW on PostgreSQL, so a migration can
remake the view under views of the administrator's own that read it;
SQLite has none, and drops it first.
{{client "col"}} is a client column with a missing address as NULL on
both stores (PostgreSQL's inet is NULL, SQLite's text is ''), so counts
of distinct clients agree.
*/ -}}
-- Per day and rule: how often a rate limit answered, and with what.
-- Only decisions a rule made are here (enforced, or in observe mode what
-- it would have answered); a rule whose action is "observe" lets the mail
-- pass and shows in the logs and mxpolicyd_ratelimit_hits_total instead.
{{createView}} report_ratelimit AS
WITH hits AS (
    SELECT {{day "time"}} AS day,
           CASE WHEN reason LIKE '%: too many networks' THEN 'distinct_networks' ELSE 'rate' END AS kind,
           substr(reason, 1, length(reason) - CASE WHEN reason LIKE '%: too many networks'
                                                   THEN length(': too many networks')
                                                   ELSE length(': over its limit') END) AS rule,
           verb, observe, client, sender
    FROM decisions
    WHERE check_name = 'ratelimit'
      AND (reason LIKE '%: over its limit' OR reason LIKE '%: too many networks')
)
SELECT day, rule, kind,
       count(*) AS hits,
       count(*) FILTER (WHERE NOT observe AND verb = 'DEFER') AS deferred,
       count(*) FILTER (WHERE NOT observe AND verb = 'REJECT') AS rejected,
       count(*) FILTER (WHERE NOT observe AND verb = 'HOLD') AS held,
       count(*) FILTER (WHERE observe) AS observed,
       count(DISTINCT {{client "client"}}) AS clients,
       count(DISTINCT sender) AS senders
FROM hits
GROUP BY day, rule, kind;
