-- Nothing to change on PostgreSQL: this version rewrites SQLite's verb
-- CHECK (sqlite/0007_decisions_verb_check.sql), which SQLite evaluated
-- through an index built anew for every row. PostgreSQL tests an IN list
-- of constants as an array, element by element (ScalarArrayOpExpr), so
-- its constraint stays as 0003 and 0004 wrote it. Both stores keep the
-- same versions (migrations.go).
SELECT 1;
