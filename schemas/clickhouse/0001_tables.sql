-- callstream core tables. Placeholders: {db}, {on_cluster}, {engine_prefix}, {engine_args}
-- (filled by schemas/migrate.py; empty on a single node, Replicated*/ON CLUSTER with --cluster).
-- Every table is a ReplacingMergeTree whose ORDER BY ends in dedup_key (the business-key hash),
-- with a bloom-filter skip index on dedup_key for the loader's "already loaded?" lookup and a
-- non-replicated insert-deduplication window so a retried insert (same token) is a no-op.
-- Columns are snake_case of the Huawei field names; *_desc columns hold English descriptions.

CREATE DATABASE IF NOT EXISTS {db}{on_cluster};

CREATE TABLE IF NOT EXISTS {db}.cdrs{on_cluster}
(
    dedup_key                 UInt64,
    notification_id           String,
    record_index              UInt16,
    service                   LowCardinality(String),
    received_at               DateTime64(6, 'UTC'),
    loaded_at                 DateTime64(3, 'UTC') DEFAULT now64(3),
    app_key                   LowCardinality(String),
    sp_id                     LowCardinality(String),
    icid                      String,
    session_id                String,
    direction                 Nullable(Int8),
    bind_num                  String,
    subscription_id           String,
    caller_num                String,
    callee_num                String,
    fwd_display_num           String,
    fwd_dst_num               String,
    call_in_time              Nullable(DateTime64(3, 'UTC')),
    call_out_start_time       Nullable(DateTime64(3, 'UTC')),
    call_out_alerting_time    Nullable(DateTime64(3, 'UTC')),
    call_out_answer_time      Nullable(DateTime64(3, 'UTC')),
    fwd_start_time            Nullable(DateTime64(3, 'UTC')),
    fwd_alerting_time         Nullable(DateTime64(3, 'UTC')),
    fwd_answer_time           Nullable(DateTime64(3, 'UTC')),
    call_end_time             Nullable(DateTime64(3, 'UTC')),
    fail_time                 Nullable(DateTime64(3, 'UTC')),
    dyn_ivr_start_time        Nullable(DateTime64(3, 'UTC')),
    record_start_time         Nullable(DateTime64(3, 'UTC')),
    fwd_unasw_rsn             Nullable(Int32),
    fwd_unasw_rsn_desc        String,
    fwd_unasw_rsn_class       LowCardinality(String),
    call_out_unasw_rsn        Nullable(Int32),
    call_out_unasw_rsn_desc   String,
    call_out_unasw_rsn_class  LowCardinality(String),
    ul_fail_reason            Nullable(Int32),
    ul_fail_reason_desc       String,
    sip_status_code           Nullable(Int32),
    sip_status_code_desc      String,
    failure_category          LowCardinality(String),
    failure_reason            String,
    dyn_ivr_path              String,
    record_flag               Nullable(UInt8),
    record_object_name        String,
    record_bucket_name        String,
    record_domain             String,
    record_file_download_url  String,
    tts_play_times            Nullable(Int32),
    tts_trans_duration        Nullable(Int32),
    service_type_code         LowCardinality(String),
    service_type              LowCardinality(String),
    host_name                 LowCardinality(String),
    user_data                 String,
    mpty_id                   String,
    answered                  UInt8,
    talk_seconds              UInt32,
    ring_seconds              Nullable(UInt32),
    setup_seconds             Nullable(UInt32),
    call_start_time           Nullable(DateTime64(3, 'UTC')),
    call_time                 DateTime64(3, 'UTC'),
    has_recording             UInt8,
    extra                     String,
    raw                       String,
    INDEX ix_dedup_key dedup_key TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX ix_session_id session_id TYPE bloom_filter(0.01) GRANULARITY 4
)
ENGINE = {engine_prefix}ReplacingMergeTree({engine_args}loaded_at)
PARTITION BY toYYYYMM(call_time)
ORDER BY (app_key, toStartOfHour(call_time), dedup_key)
SETTINGS non_replicated_deduplication_window = 10000, index_granularity = 8192;

CREATE TABLE IF NOT EXISTS {db}.call_events{on_cluster}
(
    dedup_key                 UInt64,
    notification_id           String,
    record_index              UInt16,
    service                   LowCardinality(String),
    received_at               DateTime64(6, 'UTC'),
    loaded_at                 DateTime64(3, 'UTC') DEFAULT now64(3),
    app_key                   LowCardinality(String),
    event_type                LowCardinality(String),
    event_seq                 UInt8,
    leg                       UInt8,
    session_id                String,
    timestamp                 Nullable(DateTime64(3, 'UTC')),
    event_time                DateTime64(3, 'UTC'),
    caller                    String,
    called                    String,
    state_code                Nullable(Int32),
    state_code_desc           String,
    state_desc                String,
    failure_category          LowCardinality(String),
    digit_info                String,
    user_data                 String,
    subscription_id           String,
    party_type                LowCardinality(String),
    display_caller_num        String,
    extra                     String,
    raw                       String,
    INDEX ix_dedup_key dedup_key TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX ix_session_id session_id TYPE bloom_filter(0.01) GRANULARITY 4
)
ENGINE = {engine_prefix}ReplacingMergeTree({engine_args}loaded_at)
PARTITION BY toYYYYMM(event_time)
ORDER BY (app_key, toStartOfHour(event_time), dedup_key)
SETTINGS non_replicated_deduplication_window = 10000, index_granularity = 8192;

CREATE TABLE IF NOT EXISTS {db}.number_status{on_cluster}
(
    dedup_key                 UInt64,
    notification_id           String,
    record_index              UInt16,
    service                   LowCardinality(String),
    received_at               DateTime64(6, 'UTC'),
    loaded_at                 DateTime64(3, 'UTC') DEFAULT now64(3),
    app_key                   LowCardinality(String),
    number                    String,
    status                    Nullable(Int32),
    status_desc               String,
    cause                     Nullable(Int32),
    cause_desc                String,
    available                 UInt8,
    receipt_day               Date,
    extra                     String,
    raw                       String,
    INDEX ix_dedup_key dedup_key TYPE bloom_filter(0.001) GRANULARITY 1
)
ENGINE = {engine_prefix}ReplacingMergeTree({engine_args}loaded_at)
PARTITION BY toYYYYMM(receipt_day)
ORDER BY (app_key, receipt_day, dedup_key)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS {db}.failed_events{on_cluster}
(
    dedup_key                 UInt64,
    notification_id           String,
    record_index              Int32,
    received_at               DateTime64(6, 'UTC'),
    failed_at                 DateTime64(3, 'UTC') DEFAULT now64(3),
    stage                     LowCardinality(String),
    reason                    LowCardinality(String),
    detail                    String,
    service                   LowCardinality(String),
    path                      LowCardinality(String),
    app_key                   LowCardinality(String),
    event_type                LowCardinality(String),
    source_topic              LowCardinality(String),
    source_partition          Int32,
    source_offset             Int64,
    body                      String,
    INDEX ix_dedup_key dedup_key TYPE bloom_filter(0.001) GRANULARITY 1
)
ENGINE = {engine_prefix}ReplacingMergeTree({engine_args}failed_at)
PARTITION BY toYYYYMM(received_at)
ORDER BY (toStartOfHour(received_at), dedup_key)
SETTINGS non_replicated_deduplication_window = 10000;
