-- The CDR ids and numbers stored once: in `raw`. Placeholders as in 0001_tables.sql.
--
-- `raw` is the CDR as received (keys sorted, numbers protected) and is kept verbatim. Six typed
-- columns held a second copy of its highest-entropy values (hex ids, keyed hashes of numbers,
-- binding UUIDs): about 73 of the 265 compressed bytes of a CDR, measured with bench/storage.py.
-- They become ALIAS columns: read from `raw` when a query names them, not stored.
--
--   icid             raw icid               caller_num   raw callerNum
--   subscription_id  raw subscriptionId     callee_num   raw calleeNum
--   mpty_id          raw mptyId             fwd_dst_num  raw fwdDstNum
--
-- A column reads what the loader wrote before: the normaliser takes these fields as they are (a
-- string as is, a JSON number as its text, null or absent as ''), JSONExtractString reads them the
-- same way (a non-string value as its JSON text, ClickHouse >= 21.11), and the column and the same key
-- of `raw` are protected by one rule (consumers/numbers.py). The one difference: a JSON true/false or
-- a float in exponent form reads as its JSON text (true, 1e16), where the normaliser wrote Python's
-- (True, 1e+16); no platform field is a boolean or a float. tests/test_storage.py compares both on
-- every simulated CDR and on odd values.
-- What changes for readers: `SELECT *` lists stored columns only (name the ALIAS columns, or set
-- asterisk_include_alias_columns = 1); a filter on these columns parses `raw` (the KPI views read the
-- rollups; the rollup views of 0011 compute subscription_id from the inserted block as before).
-- The loader sends the columns without a default expression (consumers/load.py), so it stops sending
-- these at its next start, with no change to its code.
--
-- `raw` itself: ZSTD(9) instead of ZSTD(6), 4.8 B less per CDR for a few per cent more insert CPU
-- (ZSTD(12): 1.8 B more for twice the CPU, ZSTD(19): 10 times). Measured and not taken: Delta or
-- DoubleDelta on the times (larger: the rows are sorted by key hash inside an hour), notification_id
-- as UUID (1.2 B per CDR, not worth a type every reader compares with text).
--
-- On a table with rows: MODIFY COLUMN ... ALIAS only changes metadata and the stored copies vanish
-- at the next merge of each part; MODIFY COLUMN raw recompresses at the next merge as well.
-- A codec cannot stay on an ALIAS column, hence REMOVE CODEC first.
-- No line below may contain a semicolon except at a statement end (migrate splits on them).

ALTER TABLE {db}.cdrs{on_cluster}
    MODIFY COLUMN icid REMOVE CODEC,
    MODIFY COLUMN caller_num REMOVE CODEC,
    MODIFY COLUMN callee_num REMOVE CODEC,
    MODIFY COLUMN fwd_dst_num REMOVE CODEC,
    MODIFY COLUMN subscription_id REMOVE CODEC,
    MODIFY COLUMN mpty_id REMOVE CODEC;

ALTER TABLE {db}.cdrs{on_cluster}
    MODIFY COLUMN icid            String ALIAS JSONExtractString(raw, 'icid'),
    MODIFY COLUMN caller_num      String ALIAS JSONExtractString(raw, 'callerNum'),
    MODIFY COLUMN callee_num      String ALIAS JSONExtractString(raw, 'calleeNum'),
    MODIFY COLUMN fwd_dst_num     String ALIAS JSONExtractString(raw, 'fwdDstNum'),
    MODIFY COLUMN subscription_id String ALIAS JSONExtractString(raw, 'subscriptionId'),
    MODIFY COLUMN mpty_id         String ALIAS JSONExtractString(raw, 'mptyId'),
    MODIFY COLUMN raw String CODEC(ZSTD(9));

ALTER TABLE {db}.call_events{on_cluster}
    MODIFY COLUMN raw String CODEC(ZSTD(9));
