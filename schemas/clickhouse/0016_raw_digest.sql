-- The digest of a CDR's `raw`, stored at insert, for the loader's "already stored, with the same
-- content?" check. Placeholders as in 0001_tables.sql.
--
-- Before a batch is inserted the loader looks its keys up (ClickHouseSink.stored_notifications). For a
-- CDR key stored already it compared MD5(raw) of the stored row with the incoming one (a CDR re-pushed
-- with other content is a conflict, kept in cdr_conflicts), and computing it read the stored `raw`: on a
-- 10 M-CDR table every found key sits in a granule of its own, about 0.7 ms a found key, 1.77 s for a
-- redelivered batch of 5,000 with 2,500 stored (bench/dedup_probe.py; the same probe without the digest
-- 102 instead of 537 ms for 500 found keys). raw_digest holds the first 8 bytes of that MD5 as a UInt64
-- (reinterpretAsUInt64(MD5(raw)); consumers.dedupe.content_digest computes the same in Python): 8 bytes
-- a CDR, a collision chance of 2^-64 per compared pair. Parts written before this migration compute it
-- from `raw` when read, as before, until a merge writes it (or run
-- `ALTER TABLE callstream.cdrs MATERIALIZE COLUMN raw_digest` once).
-- No line below may contain a semicolon except at a statement end (migrate splits on them).

ALTER TABLE {db}.cdrs{on_cluster}
    ADD COLUMN IF NOT EXISTS raw_digest UInt64 MATERIALIZED reinterpretAsUInt64(MD5(raw)) CODEC(ZSTD(1)) AFTER raw;
