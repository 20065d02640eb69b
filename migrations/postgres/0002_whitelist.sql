-- Whitelist entries managed with `mxpolicyd whitelist add|remove|import`.
-- Daemons keep every entry in memory and match there; they poll
-- whitelist_version (one tiny row) every second and reload the table only
-- when it changed, so a change reaches every host within a second or two
-- and no request ever waits on this table.

CREATE TABLE whitelist (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- client: address or prefix; client_name: verified host name;
    -- sender, recipient: envelope addresses (see whitelist/README.md).
    kind       text NOT NULL CHECK (kind IN ('client', 'client_name', 'sender', 'recipient')),
    -- Canonical form written by the daemon's validator (lowercased,
    -- prefixes masked), so (kind, value) identifies an entry.
    value      text NOT NULL CHECK (value <> ''),
    comment    text NOT NULL DEFAULT '',
    created_by text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz, -- NULL: never; ignored from this instant on
    CONSTRAINT whitelist_kind_value_key UNIQUE (kind, value)
);

-- Finding and purging expired entries without a scan.
CREATE INDEX whitelist_expires_at_idx ON whitelist (expires_at) WHERE expires_at IS NOT NULL;

-- One row, bumped by the trigger below on every change, including changes
-- made by hand in psql, so the daemons' cheap poll never misses one.
CREATE TABLE whitelist_version (
    id      boolean PRIMARY KEY DEFAULT true CHECK (id),
    version bigint NOT NULL
);
INSERT INTO whitelist_version (id, version) VALUES (true, 0);

CREATE FUNCTION whitelist_bump_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE whitelist_version SET version = version + 1;
    RETURN NULL;
END;
$$;

CREATE TRIGGER whitelist_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON whitelist
    FOR EACH STATEMENT EXECUTE FUNCTION whitelist_bump_version();
