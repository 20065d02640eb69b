-- Greylisting state (greylist/). Every time is written by the daemon from
-- its own clock, never now(), so hosts and tests agree on one timeline.
-- Only the daemon writes these tables, with one statement per decision
-- (greylist/pgstore.go); gc deletes expired rows in batches.

-- One row per (client, normalized sender, recipient) greylisting triplet.
CREATE TABLE greylist_triplet (
    -- "net:192.0.2.0/24" (client network), or "spf:example.com" when SPF
    -- passed and the key is pool-aware: any host the domain authorizes
    -- matches.
    client_key  text NOT NULL,
    sender      text NOT NULL, -- normalized (greylist.Normalize); "<>" is the null sender
    recipient   text NOT NULL, -- lowercased
    key_kind    text NOT NULL CHECK (key_kind IN ('net', 'spf')),
    client_net  cidr NOT NULL, -- network of the last client, whatever the key kind
    client_addr inet NOT NULL, -- last client address, for audit
    raw_sender  text NOT NULL, -- last envelope sender as sent
    first_seen  timestamptz NOT NULL, -- first attempt of the current round
    last_seen   timestamptz NOT NULL,
    passed_at   timestamptz,          -- first pass after the delay; NULL while pending
    attempts    integer NOT NULL,     -- attempts in this round
    passes      integer NOT NULL,     -- attempts let through in this round
    PRIMARY KEY (client_key, sender, recipient)
);

-- gc and the "deferred and never retried" report: pending rows by age.
CREATE INDEX greylist_triplet_pending_idx ON greylist_triplet (first_seen) WHERE passed_at IS NULL;
-- gc of passed rows unseen for max_age.
CREATE INDEX greylist_triplet_passed_idx ON greylist_triplet (last_seen) WHERE passed_at IS NOT NULL;

-- Client networks that passed greylisting; at greylist.awl_client_passes
-- passes (counted at most once per awl_count_interval) they skip it.
CREATE TABLE greylist_awl_client (
    client_net   cidr PRIMARY KEY,
    client_addr  inet NOT NULL, -- last client address, for audit
    first_seen   timestamptz NOT NULL,
    last_seen    timestamptz NOT NULL,
    last_counted timestamptz NOT NULL,
    passes       integer NOT NULL
);
CREATE INDEX greylist_awl_client_last_seen_idx ON greylist_awl_client (last_seen);

-- (client key, sender domain) pairs that passed once: they skip greylisting.
CREATE TABLE greylist_awl_pair (
    client_key    text NOT NULL, -- as in greylist_triplet
    sender_domain text NOT NULL,
    key_kind      text NOT NULL CHECK (key_kind IN ('net', 'spf')),
    client_net    cidr NOT NULL,
    client_addr   inet NOT NULL,
    first_seen    timestamptz NOT NULL,
    last_seen     timestamptz NOT NULL,
    PRIMARY KEY (client_key, sender_domain)
);
CREATE INDEX greylist_awl_pair_last_seen_idx ON greylist_awl_pair (last_seen);
