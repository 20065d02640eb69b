-- Nothing to change on SQLite: this version moves PostgreSQL's per-client
-- index of the decision log to each day's partition once its day is over
-- (postgres/0008_decisions_client_index_by_day.sql). SQLite's one table
-- has no days to close, so it keeps decisions_client_idx row by row. Both
-- stores keep the same versions (migrations.go).
SELECT 1;
