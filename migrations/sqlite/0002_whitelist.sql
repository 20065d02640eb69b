-- Whitelist entries managed with `mxpolicyd whitelist add|remove|import`.
-- The daemon keeps every entry in memory and matches there; it polls
-- whitelist_version every second and reloads the table only when it changed.
-- Times are Unix seconds (UTC).

CREATE TABLE whitelist (
    id         INTEGER PRIMARY KEY,
    -- client: address or prefix; client_name: verified host name;
    -- sender, recipient: envelope addresses (see whitelist/README.md).
    kind       TEXT NOT NULL CHECK (kind IN ('client', 'client_name', 'sender', 'recipient')),
    -- Canonical form written by the daemon's validator.
    value      TEXT NOT NULL CHECK (value <> ''),
    comment    TEXT NOT NULL DEFAULT '',
    created_by TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    expires_at INTEGER, -- NULL: never; ignored from this instant on
    UNIQUE (kind, value)
);

CREATE INDEX whitelist_expires_at_idx ON whitelist (expires_at) WHERE expires_at IS NOT NULL;

-- One row, bumped by the triggers below on every change, including changes
-- made by hand with sqlite3, so the daemon's poll never misses one.
CREATE TABLE whitelist_version (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT INTO whitelist_version (id, version) VALUES (1, 0);

CREATE TRIGGER whitelist_inserted AFTER INSERT ON whitelist
BEGIN
    UPDATE whitelist_version SET version = version + 1;
END;

CREATE TRIGGER whitelist_updated AFTER UPDATE ON whitelist
BEGIN
    UPDATE whitelist_version SET version = version + 1;
END;

CREATE TRIGGER whitelist_deleted AFTER DELETE ON whitelist
BEGIN
    UPDATE whitelist_version SET version = version + 1;
END;
