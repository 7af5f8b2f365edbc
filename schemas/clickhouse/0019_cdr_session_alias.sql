-- A CDR's session_id stored once, in `raw`, as 0012_storage.sql did for its other ids. Placeholders as in
-- 0001_tables.sql.
-- single node only: a cluster's Distributed `cdrs` computes each inserted row's shard from session_id
-- (cityHash64(session_id), schemas/cluster.py), and a Distributed table can compute its sharding key
-- from stored columns only, so on a cluster session_id stays a stored column and this migration is
-- recorded without a statement.
--
-- Why: the loader asks `cdrs` which of a batch's keys are stored, and without a key index that read
-- grows with the table (every granule's dedup_key and bloom filter, for every batch). The key
-- projection that `call_events` has (schemas/projections.py) costs 8.1 compressed B a row, and a CDR
-- was at 198.9 of its 200 B budget. session_id is the CDR's third largest column (15.1 B, after raw
-- and raw_digest) and `raw` holds it already: on the simulator's data a CDR 198.8 -> 183.7 B, so the
-- projection fits (bench/storage.py).
--
-- The column reads what the loader wrote before: the normaliser takes sessionId as it comes (the
-- record is refused without one), JSONExtractString reads it the same way, and both pass the one
-- protection rule for numbers inside session ids (consumers/numbers.py, SESSION_JSON_KEYS and
-- SESSION_COLUMNS). tests/test_storage.py compares it with the loader's rows as it does the others.
-- The bloom filter that the dashboard's and call_timeline's `WHERE session_id = ...` use is rebuilt
-- on the same expression: a filter on the ALIAS column is a filter on that expression, and the index
-- still skips granules (EXPLAIN indexes = 1 shows ix_session_id). The index is built for the stored parts by
-- a mutation that runs in the background (it reads `raw` of every stored CDR: a large store does not hold
-- migrate up for it, and a store whose merges are stopped holds the mutation, not migrate); until a part
-- has it, a filter on session_id reads that part whole, with the same answer.
-- What changes for readers: as for the 0012 columns, `SELECT *` leaves it out, and reading it parses
-- `raw` of the rows read. A consumer started before the migration sends session_id and its inserts
-- fail until it restarts: migrate with the consumers stopped.
-- No line below may contain a semicolon except at a statement end (migrate splits on them).

ALTER TABLE {db}.cdrs{on_cluster}
    DROP INDEX IF EXISTS ix_session_id;

ALTER TABLE {db}.cdrs{on_cluster}
    MODIFY COLUMN session_id REMOVE CODEC;

ALTER TABLE {db}.cdrs{on_cluster}
    MODIFY COLUMN session_id String ALIAS JSONExtractString(raw, 'sessionId');

ALTER TABLE {db}.cdrs{on_cluster}
    ADD INDEX IF NOT EXISTS ix_session_id JSONExtractString(raw, 'sessionId') TYPE bloom_filter(0.01) GRANULARITY 4;

ALTER TABLE {db}.cdrs{on_cluster}
    MATERIALIZE INDEX ix_session_id;
