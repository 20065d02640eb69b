-- scripts/bench.sh's database ceiling: greylist's pgDecide (greylist/pgstore.go),
-- one new triplet per transaction. Generated, do not edit:
--   go run ./internal/benchtools/pgbenchscript > scripts/bench/greylist-upsert.sql
-- Run with: pgbench -n -M prepared -f scripts/bench/greylist-upsert.sql
\set c random(0, 65535)
\set h random(1, 254)
\set s random(1, 1000000000)
\set r random(1, 1000000000)
WITH awl_client AS (
	UPDATE greylist_awl_client SET last_seen = (date_trunc('second', now()))::timestamptz
	WHERE 5::int > 0 AND client_net = network(set_masklen(('10.0.0.0'::inet + :c * 256), 24))::cidr AND passes >= 5::int AND last_seen >= (date_trunc('second', now()) - interval '3024000 seconds')::timestamptz
	RETURNING passes
), awl_pair AS (
	UPDATE greylist_awl_pair SET last_seen = (date_trunc('second', now()))::timestamptz, client_addr = ('10.0.0.0'::inet + (:c * 256 + :h))::inet
	WHERE true::bool AND ('sender' || :s || '.example')::text <> '' AND client_key = ('net:' || network(set_masklen(('10.0.0.0'::inet + :c * 256), 24)))::text AND sender_domain = ('sender' || :s || '.example')::text
		AND last_seen >= (date_trunc('second', now()) - interval '3024000 seconds')::timestamptz AND NOT EXISTS (SELECT FROM awl_client)
	RETURNING 1
), triplet AS (
	INSERT INTO greylist_triplet AS g (client_key, sender, recipient, key_kind, client_net, client_addr,
		raw_sender, first_seen, last_seen, passed_at, attempts, passes)
	SELECT ('net:' || network(set_masklen(('10.0.0.0'::inet + :c * 256), 24)))::text, ('user' || :s || '@sender' || :s || '.example')::text, ('rcpt' || :r || '@example.net')::text, 'net'::text::text, network(set_masklen(('10.0.0.0'::inet + :c * 256), 24))::cidr, ('10.0.0.0'::inet + (:c * 256 + :h))::inet, ('user' || :s || '@sender' || :s || '.example')::text,
		(date_trunc('second', now()))::timestamptz, (date_trunc('second', now()))::timestamptz, NULL, 1, 0
	WHERE NOT EXISTS (SELECT FROM awl_client) AND NOT EXISTS (SELECT FROM awl_pair)
	ON CONFLICT (client_key, sender, recipient) DO UPDATE SET
		first_seen = CASE WHEN ((g.passed_at IS NULL AND (g.first_seen < (date_trunc('second', now()) - interval '172800 seconds')::timestamptz
		OR g.first_seen > (date_trunc('second', now()))::timestamptz + interval '1 minute'))
	OR (g.passed_at IS NOT NULL AND g.last_seen < (date_trunc('second', now()) - interval '3024000 seconds')::timestamptz)) THEN (date_trunc('second', now())) ELSE g.first_seen END,
		passed_at = CASE WHEN ((g.passed_at IS NULL AND (g.first_seen < (date_trunc('second', now()) - interval '172800 seconds')::timestamptz
		OR g.first_seen > (date_trunc('second', now()))::timestamptz + interval '1 minute'))
	OR (g.passed_at IS NOT NULL AND g.last_seen < (date_trunc('second', now()) - interval '3024000 seconds')::timestamptz)) THEN NULL
			WHEN g.passed_at IS NOT NULL THEN g.passed_at
			WHEN g.first_seen <= (date_trunc('second', now()) - interval '120 seconds')::timestamptz THEN (date_trunc('second', now())) END,
		attempts = CASE WHEN ((g.passed_at IS NULL AND (g.first_seen < (date_trunc('second', now()) - interval '172800 seconds')::timestamptz
		OR g.first_seen > (date_trunc('second', now()))::timestamptz + interval '1 minute'))
	OR (g.passed_at IS NOT NULL AND g.last_seen < (date_trunc('second', now()) - interval '3024000 seconds')::timestamptz)) THEN 1 ELSE g.attempts + 1 END,
		passes = CASE WHEN ((g.passed_at IS NULL AND (g.first_seen < (date_trunc('second', now()) - interval '172800 seconds')::timestamptz
		OR g.first_seen > (date_trunc('second', now()))::timestamptz + interval '1 minute'))
	OR (g.passed_at IS NOT NULL AND g.last_seen < (date_trunc('second', now()) - interval '3024000 seconds')::timestamptz)) THEN 0
			WHEN g.passed_at IS NOT NULL OR g.first_seen <= (date_trunc('second', now()) - interval '120 seconds') THEN g.passes + 1
			ELSE g.passes END,
		last_seen = (date_trunc('second', now())), client_net = EXCLUDED.client_net, client_addr = EXCLUDED.client_addr,
		raw_sender = EXCLUDED.raw_sender
	RETURNING g.first_seen, g.passed_at, g.attempts, g.passes
), count_client AS (
	INSERT INTO greylist_awl_client AS a (client_net, client_addr, first_seen, last_seen, last_counted, passes)
	SELECT network(set_masklen(('10.0.0.0'::inet + :c * 256), 24)), ('10.0.0.0'::inet + (:c * 256 + :h)), (date_trunc('second', now())), (date_trunc('second', now())), (date_trunc('second', now())), 1
	WHERE 5 > 0 AND (EXISTS (SELECT FROM triplet WHERE passes > 0) OR EXISTS (SELECT FROM awl_pair))
	ON CONFLICT (client_net) DO UPDATE SET
		passes = CASE WHEN a.last_seen < (date_trunc('second', now()) - interval '3024000 seconds') THEN 1
			WHEN a.last_counted <= (date_trunc('second', now()) - interval '3600 seconds')::timestamptz THEN a.passes + 1 ELSE a.passes END,
		last_counted = CASE WHEN a.last_seen < (date_trunc('second', now()) - interval '3024000 seconds') OR a.last_counted <= (date_trunc('second', now()) - interval '3600 seconds') THEN (date_trunc('second', now())) ELSE a.last_counted END,
		first_seen = CASE WHEN a.last_seen < (date_trunc('second', now()) - interval '3024000 seconds') THEN (date_trunc('second', now())) ELSE a.first_seen END,
		last_seen = (date_trunc('second', now())), client_addr = ('10.0.0.0'::inet + (:c * 256 + :h))
), count_pair AS (
	INSERT INTO greylist_awl_pair AS p (client_key, sender_domain, key_kind, client_net, client_addr, first_seen, last_seen)
	SELECT ('net:' || network(set_masklen(('10.0.0.0'::inet + :c * 256), 24))), ('sender' || :s || '.example'), 'net'::text, network(set_masklen(('10.0.0.0'::inet + :c * 256), 24)), ('10.0.0.0'::inet + (:c * 256 + :h)), (date_trunc('second', now())), (date_trunc('second', now()))
	WHERE true AND ('sender' || :s || '.example') <> '' AND EXISTS (SELECT FROM triplet WHERE passes > 0)
	ON CONFLICT (client_key, sender_domain) DO UPDATE SET
		first_seen = CASE WHEN p.last_seen < (date_trunc('second', now()) - interval '3024000 seconds') THEN (date_trunc('second', now())) ELSE p.first_seen END,
		last_seen = (date_trunc('second', now())), client_net = network(set_masklen(('10.0.0.0'::inet + :c * 256), 24)), client_addr = ('10.0.0.0'::inet + (:c * 256 + :h))
)
SELECT EXISTS (SELECT FROM awl_client), EXISTS (SELECT FROM awl_pair),
	t.first_seen, t.passed_at, t.attempts, t.passes
FROM (SELECT set_config('synchronous_commit', 'off', true)) AS sc
LEFT JOIN triplet t ON true;
