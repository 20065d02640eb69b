-- Greylisting state (greylist/), the same tables as on PostgreSQL.
-- Times are Unix seconds (UTC), written from the daemon's clock; networks
-- and addresses are text in netip's canonical form.

CREATE TABLE greylist_triplet (
    client_key  TEXT NOT NULL, -- "net:192.0.2.0/24" or "spf:example.com"
    sender      TEXT NOT NULL, -- normalized; "<>" is the null sender
    recipient   TEXT NOT NULL, -- lowercased
    key_kind    TEXT NOT NULL CHECK (key_kind IN ('net', 'spf')),
    client_net  TEXT NOT NULL,
    client_addr TEXT NOT NULL,
    raw_sender  TEXT NOT NULL,
    first_seen  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    passed_at   INTEGER, -- NULL while pending
    attempts    INTEGER NOT NULL,
    passes      INTEGER NOT NULL,
    PRIMARY KEY (client_key, sender, recipient)
);
CREATE INDEX greylist_triplet_pending_idx ON greylist_triplet (first_seen) WHERE passed_at IS NULL;
CREATE INDEX greylist_triplet_passed_idx ON greylist_triplet (last_seen) WHERE passed_at IS NOT NULL;

CREATE TABLE greylist_awl_client (
    client_net   TEXT PRIMARY KEY,
    client_addr  TEXT NOT NULL,
    first_seen   INTEGER NOT NULL,
    last_seen    INTEGER NOT NULL,
    last_counted INTEGER NOT NULL,
    passes       INTEGER NOT NULL
);
CREATE INDEX greylist_awl_client_last_seen_idx ON greylist_awl_client (last_seen);

CREATE TABLE greylist_awl_pair (
    client_key    TEXT NOT NULL,
    sender_domain TEXT NOT NULL,
    key_kind      TEXT NOT NULL CHECK (key_kind IN ('net', 'spf')),
    client_net    TEXT NOT NULL,
    client_addr   TEXT NOT NULL,
    first_seen    INTEGER NOT NULL,
    last_seen     INTEGER NOT NULL,
    PRIMARY KEY (client_key, sender_domain)
);
CREATE INDEX greylist_awl_pair_last_seen_idx ON greylist_awl_pair (last_seen);
