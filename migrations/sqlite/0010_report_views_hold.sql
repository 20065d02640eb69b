-- A greylisting pass held by a later check (a rate limit's HOLD: the
-- message is accepted into the hold queue) counts as a pass in the
-- reports: report_daily's passed_after_delay and report_retry_delay count
-- it, and report_never_retried no longer lists its triplet. The views are
-- dropped and made again from the shared text.
DROP VIEW report_daily;
DROP VIEW report_never_retried;
DROP VIEW report_retry_delay;
{{template "report_views.sql"}}
