-- CDR fields of the Huawei docs that were only kept in `extra`, how the call kind was decided, and
-- the CDRs that conflict with a stored one. Placeholders as in 0001.
--   extend_num          AXE extension number (extendNum)
--   voice_check_type    voiceCheckType, as pushed
--   create_mpty_time    createMptyTime: multi-party (conference) created, UTC
--   join_mpty_time      joinMptyTime: this party joined the multi-party call, UTC
--   service_type_source how service_type was decided: serviceType (the code), fwd_fields (a forward leg
--                       is present: callback), notification_fields (TTS / IVR figures), privacy (the
--                       push path), none (nothing tells: service_type = 'unknown')
-- No line below may contain a semicolon except at a statement end (migrate splits on them).

ALTER TABLE {db}.cdrs{on_cluster}
    ADD COLUMN IF NOT EXISTS create_mpty_time Nullable(DateTime64(3, 'UTC')) AFTER mpty_id,
    ADD COLUMN IF NOT EXISTS join_mpty_time Nullable(DateTime64(3, 'UTC')) AFTER create_mpty_time,
    ADD COLUMN IF NOT EXISTS extend_num String AFTER join_mpty_time,
    ADD COLUMN IF NOT EXISTS voice_check_type Nullable(Int32) AFTER extend_num,
    ADD COLUMN IF NOT EXISTS service_type_source LowCardinality(String) AFTER service_type;

-- A CDR whose business key (dedup_key) is stored already, with other content. Rule: the CDR stored
-- first stays in `cdrs` (subscribers already have it); the later one is kept here, with the names of
-- the fields that differ, and counted in callstream_consumer_conflicting_records_total.
CREATE TABLE IF NOT EXISTS {db}.cdr_conflicts{on_cluster}
(
    dedup_key                 UInt64,
    cdr_key                   UInt64,
    detected_at               DateTime64(3, 'UTC') DEFAULT now64(3),
    received_at               DateTime64(6, 'UTC'),
    app_key                   LowCardinality(String),
    session_id                String,
    icid                      String,
    kept_notification_id      String,
    notification_id           String,
    record_index              UInt16,
    differing_fields          Array(String),
    raw                       String,
    INDEX ix_dedup_key dedup_key TYPE bloom_filter(0.001) GRANULARITY 1
)
ENGINE = {engine_prefix}ReplacingMergeTree({engine_args}detected_at)
PARTITION BY toYYYYMM(received_at)
ORDER BY (app_key, cdr_key, dedup_key)
SETTINGS non_replicated_deduplication_window = 10000;
