-- report_ratelimit counts a request without a client address as no
-- client on both stores: PostgreSQL stored it as NULL, which
-- count(DISTINCT) skips, and SQLite as '', which it counted as one client
-- (shared/ratelimit_views.sql now writes the column through its client
-- call). The view is replaced from the shared text (CREATE OR REPLACE:
-- the same columns), so views of the administrator's own on it stay.
{{template "ratelimit_views.sql"}}
