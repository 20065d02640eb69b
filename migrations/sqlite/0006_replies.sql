-- Replies (replies/), the same table as on PostgreSQL. Times are Unix
-- seconds (UTC), written from the daemon's clock.
CREATE TABLE replies (
    local_addr     TEXT NOT NULL, -- the authenticated envelope sender, lowercased
    outside_addr   TEXT NOT NULL, -- normalized (greylist.Normalize)
    outside_domain TEXT NOT NULL,
    first_seen     INTEGER NOT NULL,
    last_seen      INTEGER NOT NULL,
    PRIMARY KEY (local_addr, outside_addr)
);
CREATE INDEX replies_domain_idx ON replies (local_addr, outside_domain);
CREATE INDEX replies_last_seen_idx ON replies (last_seen);
