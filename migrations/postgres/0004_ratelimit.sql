-- Rate limits (ratelimit/): the counters every daemon on this database
-- shares. Each decision is one statement on them (ratelimit/pgstore.go),
-- with times from the daemon's clock, never now(); gc deletes the rows
-- that no longer limit anything.

-- One row per (rule, key) of a rate rule: GCRA's theoretical arrival time
-- (TAT). A key is over its limit while tat - now > tau. Times here are
-- integer nanoseconds since the Unix epoch, on both stores: the
-- algorithm's arithmetic needs sub-second steps (a byte of a bytes rule
-- costs nanoseconds) and an integer is exact in both. A row whose tat has
-- passed is the same as no row (the whole burst is back): gc removes it.
CREATE TABLE ratelimit_gcra (
    rule    text NOT NULL,    -- ratelimit.rules[].name
    key     text NOT NULL,    -- the rule's key parts, joined with "|"
    tat     bigint NOT NULL,  -- theoretical arrival time, ns since the epoch
    tau     bigint NOT NULL,  -- the burst, as time (burst × per / N), ns
    allowed boolean NOT NULL, -- the last decision was under the limit
    PRIMARY KEY (rule, key)
);
-- gc: rows whose tat has passed.
CREATE INDEX ratelimit_gcra_tat_idx ON ratelimit_gcra (tat);

-- distinct_networks rules: the client networks each key was seen from.
-- A row counts until expires (last_seen + the rule's window).
CREATE TABLE ratelimit_network (
    rule      text NOT NULL,
    key       text NOT NULL,
    network   text NOT NULL, -- the client's network, "192.0.2.0/24"
    last_seen timestamptz NOT NULL,
    expires   timestamptz NOT NULL,
    PRIMARY KEY (rule, key, network)
);
-- gc: rows past their window.
CREATE INDEX ratelimit_network_expires_idx ON ratelimit_network (expires);

-- A distinct_networks rule answers HOLD (access(5)), a verb of its own
-- in the decision log (policy.ClassHold). The constraint is the inline
-- one of 0003, so it has PostgreSQL's default name.
ALTER TABLE decisions DROP CONSTRAINT decisions_verb_check;
ALTER TABLE decisions ADD CONSTRAINT decisions_verb_check
    CHECK (verb IN ('DUNNO', 'PREPEND', 'WARN', 'DEFER', 'REJECT', 'HOLD'));

-- The per-rule report: one text for both stores.
{{template "ratelimit_views.sql"}}
