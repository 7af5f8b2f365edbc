-- The callouts of every session, sorted by session, fed on insert. Placeholders as in 0001_tables.sql.
--
-- The loader gives each voice callback event its leg from the session's earliest callout
-- (consumers/enrich.assign_legs): for the sessions of every batch it asks the store for their earliest
-- stored callout. call_events is sorted by (app_key, hour, dedup_key), so that question read the
-- session_id and event_type of every stored event: one batch's 1,500 sessions took 201 ms at 10 M
-- stored events, and the time grew with the table (bench/key_lookup.py). This table holds only the
-- callouts (about one event in four), sorted by session_id: the same question reads the few granules
-- of the asked sessions. Exact: every callout inserted into call_events is inserted here by the view
-- (a retried insert is dropped here as there, deduplicate_blocks_in_dependent_materialized_views); a
-- callout stored twice changes no minimum. `callstream migrate` fills it from call_events FINAL when it
-- creates it, `callstream migrate --rebuild-rollups` refills it. It holds numbers (called) and
-- session ids as call_events does, protected alike: `callstream erase` deletes from it (it deletes from
-- every table with such columns) and its rows expire with call_events' (event_retention_days,
-- schemas/retention.py).
-- No line below may contain a semicolon except at a statement end (migrate splits on them).

CREATE TABLE IF NOT EXISTS {db}.session_callouts{on_cluster}
(
    session_id    String CODEC(ZSTD(3)),
    dedup_key     UInt64 CODEC(ZSTD(1)),
    event_time    DateTime64(3, 'UTC') CODEC(ZSTD(1)),
    received_at   DateTime64(6, 'UTC') CODEC(ZSTD(1)),
    called        String CODEC(ZSTD(3))
)
ENGINE = {engine_prefix}ReplacingMergeTree({engine_args})
PARTITION BY toYYYYMM(received_at)
ORDER BY (session_id, dedup_key)
SETTINGS non_replicated_deduplication_window = 10000, index_granularity = 256,
    min_compress_block_size = 4096, max_compress_block_size = 8192;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.session_callouts_mv{on_cluster} TO {db}.session_callouts AS
SELECT session_id, dedup_key, event_time, received_at, called
FROM {db}.call_events
WHERE event_type = 'callout';
