-- report_never_retried finds retries in one pass over the decisions
-- instead of a lookup by client for each deferred triplet: SQLite no
-- longer keeps an index by client (sqlite/0012), and the view is one text
-- for both stores (shared/report_views.sql). The views are replaced from
-- the shared text (CREATE OR REPLACE: the same columns), so views of the
-- administrator's own on them stay.
{{template "report_views.sql"}}
