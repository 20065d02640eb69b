-- Replies (replies/): which outside addresses the local users wrote to.
-- A row is written when a SASL-authenticated user sends to an outside
-- address; mail from that address (or, with replies.match: domain, from
-- its domain) to that user then skips greylisting. Times come from the
-- daemon's clock, never now(); gc deletes rows unseen for greylist.max_age.
CREATE TABLE replies (
    local_addr     text NOT NULL, -- the local user: the authenticated envelope sender, lowercased
    outside_addr   text NOT NULL, -- the recipient it wrote to, normalized (greylist.Normalize)
    outside_domain text NOT NULL, -- the domain of outside_addr, for replies.match: domain
    first_seen     timestamptz NOT NULL,
    last_seen      timestamptz NOT NULL,
    PRIMARY KEY (local_addr, outside_addr)
);

-- replies.match: domain looks rows up by the outside domain.
CREATE INDEX replies_domain_idx ON replies (local_addr, outside_domain);
-- gc of rows unseen for max_age.
CREATE INDEX replies_last_seen_idx ON replies (last_seen);
