-- A change counter for greylisting state, bumped by `mxpolicyd greylist
-- release|forget` in the transaction that changes the rows; the daemon polls
-- it every second and clears its pass cache when it moves (greylist/cache.go).
CREATE TABLE greylist_version (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT INTO greylist_version (id, version) VALUES (1, 0);
