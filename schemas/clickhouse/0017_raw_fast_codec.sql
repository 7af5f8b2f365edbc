-- `raw` of cdrs and call_events compressed with ZSTD(1) instead of ZSTD(9). Placeholders as in 0001_tables.sql.
--
-- The embedded engine compresses `raw` when a batch is inserted and again at every merge of a part, in
-- the consumer's process: on this 2-core machine that is CPU the consumer does not have. Measured on
-- the simulator's data (20,000 calls, the rows bench/storage.py loads, batches of 1,300 rows, the same
-- rows into one table per level, three rounds, same run): a CDR's insert 94-104 -> 62-70 us of CPU,
-- its OPTIMIZE FINAL 52-62 -> 17-25 us; a call event's insert 40-46 -> 27-35 us, its merge 8-11 -> 4-7 us.
-- What it costs: `raw` of a CDR 113.6 -> 117.0 compressed bytes (the whole CDR 195.8 -> 199.2 B), of a
-- call event 35.4 -> 36.5 B. Levels 2, 3 and 6 compress these JSON documents worse than 1 (118.3, 127.3,
-- 118.5 B: ZSTD's strategies change at those levels) and cost more CPU than 1.
-- Only metadata changes: parts written before keep ZSTD(9) until their next merge.
-- No line below may contain a semicolon except at a statement end (migrate splits on them).

ALTER TABLE {db}.cdrs{on_cluster}
    MODIFY COLUMN raw String CODEC(ZSTD(1));

ALTER TABLE {db}.call_events{on_cluster}
    MODIFY COLUMN raw String CODEC(ZSTD(1));
