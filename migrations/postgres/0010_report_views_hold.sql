-- A greylisting pass held by a later check (a rate limit's HOLD: the
-- message is accepted into the hold queue) counts as a pass in the
-- reports: report_daily's passed_after_delay and report_retry_delay count
-- it, and report_never_retried no longer lists its triplet. The views are
-- replaced from the shared text (CREATE OR REPLACE: the same columns), so
-- views of the administrator's own on them stay.
{{template "report_views.sql"}}
