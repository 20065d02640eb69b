-- Rate limits (ratelimit/), the same tables as on PostgreSQL. tat and tau
-- are nanoseconds since the Unix epoch, as there; the other times are
-- Unix seconds (UTC), written from the daemon's clock.
CREATE TABLE ratelimit_gcra (
    rule    TEXT NOT NULL,
    key     TEXT NOT NULL,
    tat     INTEGER NOT NULL, -- theoretical arrival time, ns since the epoch
    tau     INTEGER NOT NULL, -- the burst, as time, ns
    allowed INTEGER NOT NULL CHECK (allowed IN (0, 1)), -- the last decision was under the limit
    PRIMARY KEY (rule, key)
);
CREATE INDEX ratelimit_gcra_tat_idx ON ratelimit_gcra (tat);

CREATE TABLE ratelimit_network (
    rule      TEXT NOT NULL,
    key       TEXT NOT NULL,
    network   TEXT NOT NULL,
    last_seen INTEGER NOT NULL,
    expires   INTEGER NOT NULL,
    PRIMARY KEY (rule, key, network)
);
CREATE INDEX ratelimit_network_expires_idx ON ratelimit_network (expires);

-- The decision log's verb may now be HOLD. SQLite cannot change a CHECK
-- constraint in place, so the table is rebuilt ("Making Other Kinds Of
-- Table Schema Changes", sqlite.org/lang_altertable.html): the views that
-- read it are dropped first and made again from their one text.
DROP VIEW report_daily;
DROP VIEW report_never_retried;
DROP VIEW report_retry_delay;
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
    verb          TEXT NOT NULL CHECK (verb IN ('DUNNO', 'PREPEND', 'WARN', 'DEFER', 'REJECT', 'HOLD')),
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

-- The per-rule report: one text for both stores.
{{template "ratelimit_views.sql"}}
