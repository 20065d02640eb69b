-- The decision log keeps no index by client on SQLite. Kept up row by
-- row, it put a page at a random place of the index into every commit,
-- and with many distinct clients it was most of what storing a decision
-- cost this store: with 64 busy connections on new triplets, dropping it
-- took greylisting's p99 from 21-27 ms to 15-16 ms and a sixth to a
-- quarter off the CPU per decision (docs/PERFORMANCE.md). PostgreSQL keeps
-- none on today's partition either, and builds one per ended day
-- (0008_decisions_client_index_by_day.sql); SQLite's one table has no
-- ended days. report_never_retried now finds retries in one pass over
-- the table (shared/report_views.sql); a lookup by client scans the
-- table, or the time range it names with the index on time.
DROP INDEX decisions_client_idx;
DROP VIEW report_daily;
DROP VIEW report_never_retried;
DROP VIEW report_retry_delay;
{{template "report_views.sql"}}
