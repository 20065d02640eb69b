-- A change counter for greylisting state, bumped by the administrative
-- commands (`mxpolicyd greylist release|forget`) in the transaction that
-- changes the rows. Daemons poll it every second and clear their in-memory
-- pass cache when it moves (greylist/cache.go), so a forgotten triplet is
-- greylisted again on every host within a second or two. Decisions do not
-- bump it: a trigger on greylist_triplet would fire on every request, and a
-- decision never takes a pass away.
CREATE TABLE greylist_version (
    id      boolean PRIMARY KEY DEFAULT true CHECK (id),
    version bigint NOT NULL
);
INSERT INTO greylist_version (id, version) VALUES (true, 0);
