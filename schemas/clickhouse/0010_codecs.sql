-- Column codecs and types, measured with bench/storage.py on simulator data (docs/analytics.md,
-- "Storage"). Placeholders as in 0001_tables.sql. The ALTERs only change how columns are stored:
-- new parts are written with these codecs at once, existing parts on their next merge (or
-- OPTIMIZE ... FINAL), and the String -> LowCardinality(String) changes run as one mutation per table.
--
--   raw / body            ZSTD(6)   the JSON as received: the largest column (about 45 % of a CDR)
--   other free text, ids  ZSTD(3)   session ids, icid, hashed numbers: ZSTD halves what LZ4 kept
--   descriptions, names   LowCardinality(String): a handful of distinct values per code table
--   times                 ZSTD(1)   rows are sorted by (app_key, hour, dedup_key), so a time column
--                                   is not monotonic inside a part: Delta/DoubleDelta made these
--                                   columns larger (measured), ZSTD alone is the smallest
--   loaded_at             DoubleDelta, ZSTD(1): one value per insert, constant runs
--   small integers        T64, ZSTD(1)  (codes, seconds, record indexes: a few significant bits)
--   dedup_key             ZSTD(1)   a hash: incompressible, ZSTD(1) only frames it cheaply
-- notification_id stays a String: as UUID it saved 1.2 B per CDR and 2 B per event (measured),
-- less than the cost of changing a column every reader compares with text.
-- No line below may contain a semicolon except at a statement end (migrate splits on them).

ALTER TABLE {db}.cdrs{on_cluster}
    MODIFY COLUMN dedup_key                UInt64 CODEC(ZSTD(1)),
    MODIFY COLUMN notification_id          String CODEC(ZSTD(3)),
    MODIFY COLUMN record_index             UInt16 CODEC(T64, ZSTD(1)),
    MODIFY COLUMN received_at              DateTime64(6, 'UTC') CODEC(ZSTD(1)),
    MODIFY COLUMN loaded_at                DateTime64(3, 'UTC') DEFAULT now64(3) CODEC(DoubleDelta, ZSTD(1)),
    MODIFY COLUMN icid                     String CODEC(ZSTD(3)),
    MODIFY COLUMN session_id               String CODEC(ZSTD(3)),
    MODIFY COLUMN direction                Nullable(Int8) CODEC(ZSTD(1)),
    MODIFY COLUMN bind_num                 LowCardinality(String),
    MODIFY COLUMN subscription_id          String CODEC(ZSTD(3)),
    MODIFY COLUMN caller_num               String CODEC(ZSTD(3)),
    MODIFY COLUMN callee_num               String CODEC(ZSTD(3)),
    MODIFY COLUMN fwd_display_num          LowCardinality(String),
    MODIFY COLUMN fwd_dst_num              String CODEC(ZSTD(3)),
    MODIFY COLUMN call_in_time             Nullable(DateTime64(3, 'UTC')) CODEC(ZSTD(1)),
    MODIFY COLUMN call_out_start_time      Nullable(DateTime64(3, 'UTC')) CODEC(ZSTD(1)),
    MODIFY COLUMN call_out_alerting_time   Nullable(DateTime64(3, 'UTC')) CODEC(ZSTD(1)),
    MODIFY COLUMN call_out_answer_time     Nullable(DateTime64(3, 'UTC')) CODEC(ZSTD(1)),
    MODIFY COLUMN fwd_start_time           Nullable(DateTime64(3, 'UTC')) CODEC(ZSTD(1)),
    MODIFY COLUMN fwd_alerting_time        Nullable(DateTime64(3, 'UTC')) CODEC(ZSTD(1)),
    MODIFY COLUMN fwd_answer_time          Nullable(DateTime64(3, 'UTC')) CODEC(ZSTD(1)),
    MODIFY COLUMN call_end_time            Nullable(DateTime64(3, 'UTC')) CODEC(ZSTD(1)),
    MODIFY COLUMN fail_time                Nullable(DateTime64(3, 'UTC')) CODEC(ZSTD(1)),
    MODIFY COLUMN dyn_ivr_start_time       Nullable(DateTime64(3, 'UTC')) CODEC(ZSTD(1)),
    MODIFY COLUMN record_start_time        Nullable(DateTime64(3, 'UTC')) CODEC(ZSTD(1)),
    MODIFY COLUMN fwd_unasw_rsn            Nullable(Int32) CODEC(ZSTD(1)),
    MODIFY COLUMN fwd_unasw_rsn_desc       LowCardinality(String),
    MODIFY COLUMN call_out_unasw_rsn       Nullable(Int32) CODEC(ZSTD(1)),
    MODIFY COLUMN call_out_unasw_rsn_desc  LowCardinality(String),
    MODIFY COLUMN ul_fail_reason           Nullable(Int32) CODEC(ZSTD(1)),
    MODIFY COLUMN ul_fail_reason_desc      LowCardinality(String),
    MODIFY COLUMN sip_status_code          Nullable(Int32) CODEC(ZSTD(1)),
    MODIFY COLUMN sip_status_code_desc     LowCardinality(String),
    MODIFY COLUMN failure_reason           LowCardinality(String),
    MODIFY COLUMN dyn_ivr_path             String CODEC(ZSTD(3)),
    MODIFY COLUMN record_flag              Nullable(UInt8) CODEC(ZSTD(1)),
    MODIFY COLUMN record_object_name       String CODEC(ZSTD(3)),
    MODIFY COLUMN record_bucket_name       LowCardinality(String),
    MODIFY COLUMN record_domain            LowCardinality(String),
    MODIFY COLUMN record_file_download_url String CODEC(ZSTD(3)),
    MODIFY COLUMN tts_play_times           Nullable(Int32) CODEC(ZSTD(1)),
    MODIFY COLUMN tts_trans_duration       Nullable(Int32) CODEC(ZSTD(1)),
    MODIFY COLUMN user_data                String CODEC(ZSTD(3)),
    MODIFY COLUMN mpty_id                  String CODEC(ZSTD(3)),
    MODIFY COLUMN create_mpty_time         Nullable(DateTime64(3, 'UTC')) CODEC(ZSTD(1)),
    MODIFY COLUMN join_mpty_time           Nullable(DateTime64(3, 'UTC')) CODEC(ZSTD(1)),
    MODIFY COLUMN extend_num               String CODEC(ZSTD(3)),
    MODIFY COLUMN voice_check_type         Nullable(Int32) CODEC(ZSTD(1)),
    MODIFY COLUMN answered                 UInt8 CODEC(T64, ZSTD(1)),
    MODIFY COLUMN talk_seconds             UInt32 CODEC(T64, ZSTD(1)),
    MODIFY COLUMN ring_seconds             Nullable(UInt32) CODEC(ZSTD(1)),
    MODIFY COLUMN setup_seconds            Nullable(UInt32) CODEC(ZSTD(1)),
    MODIFY COLUMN pdd_ms                   Nullable(UInt32) CODEC(ZSTD(1)),
    MODIFY COLUMN refused                  UInt8 CODEC(T64, ZSTD(1)),
    MODIFY COLUMN call_start_time          Nullable(DateTime64(3, 'UTC')) CODEC(ZSTD(1)),
    MODIFY COLUMN call_time                DateTime64(3, 'UTC') CODEC(ZSTD(1)),
    MODIFY COLUMN has_recording            UInt8 CODEC(T64, ZSTD(1)),
    MODIFY COLUMN extra                    String CODEC(ZSTD(3)),
    MODIFY COLUMN raw                      String CODEC(ZSTD(6));

ALTER TABLE {db}.call_events{on_cluster}
    MODIFY COLUMN dedup_key                UInt64 CODEC(ZSTD(1)),
    MODIFY COLUMN notification_id          String CODEC(ZSTD(3)),
    MODIFY COLUMN record_index             UInt16 CODEC(T64, ZSTD(1)),
    MODIFY COLUMN received_at              DateTime64(6, 'UTC') CODEC(ZSTD(1)),
    MODIFY COLUMN loaded_at                DateTime64(3, 'UTC') DEFAULT now64(3) CODEC(DoubleDelta, ZSTD(1)),
    MODIFY COLUMN session_id               String CODEC(ZSTD(3)),
    MODIFY COLUMN timestamp                Nullable(DateTime64(3, 'UTC')) CODEC(ZSTD(1)),
    MODIFY COLUMN event_time               DateTime64(3, 'UTC') CODEC(ZSTD(1)),
    MODIFY COLUMN caller                   String CODEC(ZSTD(3)),
    MODIFY COLUMN called                   String CODEC(ZSTD(3)),
    MODIFY COLUMN state_code               Nullable(Int32) CODEC(ZSTD(1)),
    MODIFY COLUMN state_code_desc          LowCardinality(String),
    MODIFY COLUMN state_desc               LowCardinality(String),
    MODIFY COLUMN digit_info               String CODEC(ZSTD(3)),
    MODIFY COLUMN user_data                String CODEC(ZSTD(3)),
    MODIFY COLUMN subscription_id          String CODEC(ZSTD(3)),
    MODIFY COLUMN display_caller_num       String CODEC(ZSTD(3)),
    MODIFY COLUMN extra                    String CODEC(ZSTD(3)),
    MODIFY COLUMN raw                      String CODEC(ZSTD(6));

ALTER TABLE {db}.number_status{on_cluster}
    MODIFY COLUMN dedup_key                UInt64 CODEC(ZSTD(1)),
    MODIFY COLUMN notification_id          String CODEC(ZSTD(3)),
    MODIFY COLUMN received_at              DateTime64(6, 'UTC') CODEC(ZSTD(1)),
    MODIFY COLUMN loaded_at                DateTime64(3, 'UTC') DEFAULT now64(3) CODEC(DoubleDelta, ZSTD(1)),
    MODIFY COLUMN number                   String CODEC(ZSTD(3)),
    MODIFY COLUMN status_desc              LowCardinality(String),
    MODIFY COLUMN cause_desc               LowCardinality(String),
    MODIFY COLUMN extra                    String CODEC(ZSTD(3)),
    MODIFY COLUMN raw                      String CODEC(ZSTD(6));

ALTER TABLE {db}.failed_events{on_cluster}
    MODIFY COLUMN notification_id          String CODEC(ZSTD(3)),
    MODIFY COLUMN received_at              DateTime64(6, 'UTC') CODEC(ZSTD(1)),
    MODIFY COLUMN failed_at                DateTime64(3, 'UTC') DEFAULT now64(3) CODEC(DoubleDelta, ZSTD(1)),
    MODIFY COLUMN detail                   String CODEC(ZSTD(3)),
    MODIFY COLUMN body                     String CODEC(ZSTD(6));
