-- The decision log's verb CHECK, written as comparisons instead of IN.
--
-- SQLite codes an IN over more than two constants as a lookup in an
-- ephemeral index it fills from the list, and within a CHECK constraint it
-- does so again for every row inserted (sqlite3FindInIndex and
-- sqlite3CodeRhsOfIN in sqlite's expr.c: the list is built once per
-- statement only outside constraints; EXPLAIN of the decision log's INSERT
-- shows OpenEphemeral and six IdxInserts per row). Comparisons joined by
-- OR allow the same values and cost a few opcodes. SQLite cannot change a
-- CHECK constraint in place, so the table is rebuilt as in 0004 ("Making
-- Other Kinds Of Table Schema Changes", sqlite.org/lang_altertable.html).
-- The rebuild copies every row: about 5 s for a million (measured with
-- `mxpolicyd migrate` on a 200 MB file). serve migrates a SQLite store
-- before it listens, so meanwhile Postfix applies the check's
-- default_action (DUNNO in the README's main.cf).
DROP VIEW report_daily;
DROP VIEW report_never_retried;
DROP VIEW report_retry_delay;
DROP VIEW report_ratelimit;
CREATE TABLE decisions_new (
    time          INTEGER NOT NULL,
    host          TEXT NOT NULL DEFAULT '',
    client        TEXT NOT NULL DEFAULT '',
    client_name   TEXT NOT NULL DEFAULT '',
    helo          TEXT NOT NULL DEFAULT '',
    sender        TEXT NOT NULL DEFAULT '',
    recipient     TEXT NOT NULL DEFAULT '',
    instance      TEXT NOT NULL DEFAULT '',
    queue_id      TEXT NOT NULL DEFAULT '',
    check_name    TEXT NOT NULL DEFAULT '',
    action        TEXT NOT NULL,
    would_action  TEXT NOT NULL DEFAULT '',
    verb          TEXT NOT NULL CHECK (verb = 'DUNNO' OR verb = 'PREPEND' OR verb = 'WARN'
                                       OR verb = 'DEFER' OR verb = 'REJECT' OR verb = 'HOLD'),
    reason        TEXT NOT NULL DEFAULT '',
    delay_seconds INTEGER NOT NULL DEFAULT 0,
    duration_us   INTEGER NOT NULL DEFAULT 0,
    observe       INTEGER NOT NULL DEFAULT 0 CHECK (observe IN (0, 1)),
    whitelist     TEXT NOT NULL DEFAULT '',
    errors        TEXT NOT NULL DEFAULT ''
);
INSERT INTO decisions_new SELECT time, host, client, client_name, helo, sender, recipient, instance,
    queue_id, check_name, action, would_action, verb, reason, delay_seconds, duration_us, observe,
    whitelist, errors FROM decisions;
DROP TABLE decisions;
-- A view of the administrator's own on decisions would make the rename
-- fail ("error in view ...: no such table") and the upgrade with it; the
-- legacy rename leaves views alone, and they read the new table by name
-- ("ALTER TABLE RENAME", sqlite.org/lang_altertable.html, and its
-- legacy_alter_table compatibility note).
PRAGMA legacy_alter_table = ON;
ALTER TABLE decisions_new RENAME TO decisions;
PRAGMA legacy_alter_table = OFF;
CREATE INDEX decisions_time_idx ON decisions (time);
CREATE INDEX decisions_client_idx ON decisions (client, time);
{{template "report_views.sql"}}
{{template "ratelimit_views.sql"}}
