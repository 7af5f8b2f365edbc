-- A projection of call_events ordered by dedup_key alone, for the loader's per-batch key lookup.
-- Placeholders as in 0001_tables.sql.
--
-- Before a batch is inserted the loader asks which of its keys are stored (ClickHouseSink
-- .stored_notifications). call_events is ordered by (app_key, hour, dedup_key) and its bloom filter
-- cannot exclude a granule for thousands of keys at once, so that lookup read the whole table: on 10 M
-- events, 9.97 M rows and 322-366 ms for a batch's 6,000 new keys, growing with the table
-- (bench/key_lookup.py). This projection holds each part's keys sorted (index granularity 256, 4 KB
-- compressed blocks, so a key reads one small block): the lookup first finds which keys the projection
-- has (2.0 M rows read, 145 ms for 6,000 keys; 26 ms against 163 for 500), then reads the notification
-- ids of those keys only. 7.5 compressed bytes per stored event. cdrs has none: its 200 B per CDR budget
-- does not leave the room.
--
-- ReplacingMergeTree keeps a projection only when told what merges do with it: rebuild it from the
-- merged part. Lightweight deletes stay refused on call_events (the engine's default for a table with a
-- projection): a lightweight delete only masks rows in the part, and a query answered from the
-- projection (`SELECT dedup_key FROM call_events`) still returned a deleted row with the 'rebuild' mode
-- in the embedded engine. `callstream erase` deletes from call_events with an ALTER TABLE ... DELETE
-- mutation, which rewrites the parts and their projections. MATERIALIZE writes the projection for the
-- parts already there (a mutation: it reads the key column of every part once). Parts without it
-- (restored from a backup made before this migration, say) are noticed by the lookup, which then reads
-- the table as before.
-- No line below may contain a semicolon except at a statement end (migrate splits on them).

ALTER TABLE {db}.call_events{on_cluster}
    MODIFY SETTING deduplicate_merge_projection_mode = 'rebuild';

ALTER TABLE {db}.call_events{on_cluster}
    ADD PROJECTION IF NOT EXISTS by_key (SELECT dedup_key ORDER BY dedup_key)
    WITH SETTINGS (index_granularity = 256, min_compress_block_size = 4096, max_compress_block_size = 4096);

ALTER TABLE {db}.call_events{on_cluster} MATERIALIZE PROJECTION by_key SETTINGS mutations_sync = 2;
