-- KPI rollups fed on insert. Placeholders as in 0001_tables.sql.
--
-- Every insert into cdrs also runs the materialized views below over the inserted block, which add
-- one aggregated row per key to an AggregatingMergeTree rollup (every numerator and
-- denominator of 0004_kpi_standards.sql as SimpleAggregateFunction(sum), PDD and ring time as
-- quantile states). The public views
-- (kpi_hourly, kpi_daily, kpi_by_service_type, kpi_by_number, kpi_by_binding, failure_causes) keep
-- their names and columns and read the rollups instead of cdrs FINAL, so they cost what the number of
-- rollup rows costs, not what the number of CDRs costs.
--
-- Exactly once: the loader inserts a CDR only when its dedup_key is not stored yet (re-pushes and
-- replays never reach the insert), and a retried insert carries the same insert_deduplication_token:
-- cdrs drops the repeated block and, with deduplicate_blocks_in_dependent_materialized_views (on
-- by default in this engine, required on a server profile), each rollup drops the block derived from
-- it, for which every rollup keeps its own deduplication window. Tested in tests/test_rollups.py.
-- `callstream migrate` fills the rollups from cdrs FINAL when it creates them, and
-- `callstream migrate --rebuild-rollups` rebuilds them from cdrs FINAL (idempotent) after an erasure,
-- a retention run, or two loaders that raced on one re-pushed CDR.
--
-- Quantiles: quantilesExactWeightedInterpolated states. The state is a map value -> calls, and
-- pdd_ms/ring_seconds come from times with whole seconds, so a state holds a few dozen entries however
-- many calls it counts, merges exactly across parts, hours and days, and reads the same value as
-- quantileExactInclusive on the CDRs (R-7 linear interpolation between order statistics): the
-- estimator is exact (error 0 up to float rounding, about 1e-15 s; bench/analytics.py and
-- tests/test_rollups.py compare both).
-- No line below may contain a semicolon except at a statement end (migrate splits on them).


CREATE TABLE IF NOT EXISTS {db}.rollup_hourly{on_cluster}
(
    app_key            LowCardinality(String),
    hour               DateTime('UTC'),
    service            LowCardinality(String),
    service_type       LowCardinality(String),
    attempts           SimpleAggregateFunction(sum, UInt64),
    answered           SimpleAggregateFunction(sum, UInt64),
    seizures           SimpleAggregateFunction(sum, UInt64),
    refused            SimpleAggregateFunction(sum, UInt64),
    ner_numerator      SimpleAggregateFunction(sum, UInt64),
    failed             SimpleAggregateFunction(sum, UInt64),
    user_busy          SimpleAggregateFunction(sum, UInt64),
    no_answer          SimpleAggregateFunction(sum, UInt64),
    user_rejected      SimpleAggregateFunction(sum, UInt64),
    talk_seconds_sum   SimpleAggregateFunction(sum, UInt64),
    setup_samples      SimpleAggregateFunction(sum, UInt64),
    setup_seconds_sum  SimpleAggregateFunction(sum, UInt64),
    ring_samples       SimpleAggregateFunction(sum, UInt64),
    ring_seconds_sum   SimpleAggregateFunction(sum, UInt64),
    pdd_samples        SimpleAggregateFunction(sum, UInt64),
    pdd_ms_sum         SimpleAggregateFunction(sum, UInt64),
    recordings         SimpleAggregateFunction(sum, UInt64),
    pdd_quantiles      AggregateFunction(quantilesExactWeightedInterpolated(0.5, 0.95), Nullable(UInt32), UInt64),
    ring_quantiles     AggregateFunction(quantilesExactWeightedInterpolated(0.5, 0.95), Nullable(UInt32), UInt64)
)
ENGINE = {engine_prefix}AggregatingMergeTree({engine_args})
PARTITION BY toYYYYMM(hour)
ORDER BY (app_key, hour, service, service_type)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS {db}.rollup_by_number{on_cluster}
(
    app_key            LowCardinality(String),
    day                Date,
    service            LowCardinality(String),
    bind_num           LowCardinality(String),
    attempts           SimpleAggregateFunction(sum, UInt64),
    answered           SimpleAggregateFunction(sum, UInt64),
    seizures           SimpleAggregateFunction(sum, UInt64),
    refused            SimpleAggregateFunction(sum, UInt64),
    ner_numerator      SimpleAggregateFunction(sum, UInt64),
    failed             SimpleAggregateFunction(sum, UInt64),
    user_busy          SimpleAggregateFunction(sum, UInt64),
    no_answer          SimpleAggregateFunction(sum, UInt64),
    user_rejected      SimpleAggregateFunction(sum, UInt64),
    talk_seconds_sum   SimpleAggregateFunction(sum, UInt64),
    setup_samples      SimpleAggregateFunction(sum, UInt64),
    setup_seconds_sum  SimpleAggregateFunction(sum, UInt64),
    ring_samples       SimpleAggregateFunction(sum, UInt64),
    ring_seconds_sum   SimpleAggregateFunction(sum, UInt64),
    pdd_samples        SimpleAggregateFunction(sum, UInt64),
    pdd_ms_sum         SimpleAggregateFunction(sum, UInt64),
    recordings         SimpleAggregateFunction(sum, UInt64),
    pdd_quantiles      AggregateFunction(quantilesExactWeightedInterpolated(0.5, 0.95), Nullable(UInt32), UInt64),
    ring_quantiles     AggregateFunction(quantilesExactWeightedInterpolated(0.5, 0.95), Nullable(UInt32), UInt64)
)
ENGINE = {engine_prefix}AggregatingMergeTree({engine_args})
PARTITION BY toYYYYMM(day)
ORDER BY (app_key, day, service, bind_num)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS {db}.rollup_by_binding{on_cluster}
(
    app_key            LowCardinality(String),
    day                Date,
    service            LowCardinality(String),
    subscription_id    String CODEC(ZSTD(3)),
    bind_num           LowCardinality(String),
    attempts           SimpleAggregateFunction(sum, UInt64),
    answered           SimpleAggregateFunction(sum, UInt64),
    seizures           SimpleAggregateFunction(sum, UInt64),
    refused            SimpleAggregateFunction(sum, UInt64),
    ner_numerator      SimpleAggregateFunction(sum, UInt64),
    failed             SimpleAggregateFunction(sum, UInt64),
    user_busy          SimpleAggregateFunction(sum, UInt64),
    no_answer          SimpleAggregateFunction(sum, UInt64),
    user_rejected      SimpleAggregateFunction(sum, UInt64),
    talk_seconds_sum   SimpleAggregateFunction(sum, UInt64),
    setup_samples      SimpleAggregateFunction(sum, UInt64),
    setup_seconds_sum  SimpleAggregateFunction(sum, UInt64),
    ring_samples       SimpleAggregateFunction(sum, UInt64),
    ring_seconds_sum   SimpleAggregateFunction(sum, UInt64),
    pdd_samples        SimpleAggregateFunction(sum, UInt64),
    pdd_ms_sum         SimpleAggregateFunction(sum, UInt64),
    recordings         SimpleAggregateFunction(sum, UInt64),
    pdd_quantiles      AggregateFunction(quantilesExactWeightedInterpolated(0.5, 0.95), Nullable(UInt32), UInt64),
    ring_quantiles     AggregateFunction(quantilesExactWeightedInterpolated(0.5, 0.95), Nullable(UInt32), UInt64)
)
ENGINE = {engine_prefix}AggregatingMergeTree({engine_args})
PARTITION BY toYYYYMM(day)
ORDER BY (app_key, day, service, subscription_id, bind_num)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS {db}.rollup_failures{on_cluster}
(
    app_key            LowCardinality(String),
    day                Date,
    service            LowCardinality(String),
    failure_category   LowCardinality(String),
    failure_reason     LowCardinality(String),
    calls              SimpleAggregateFunction(sum, UInt64),
    user_caused        SimpleAggregateFunction(max, UInt8),
    refused            SimpleAggregateFunction(sum, UInt64),
    failure_source     SimpleAggregateFunction(any, LowCardinality(String))
)
ENGINE = {engine_prefix}AggregatingMergeTree({engine_args})
PARTITION BY toYYYYMM(day)
ORDER BY (app_key, day, service, failure_category, failure_reason)
SETTINGS non_replicated_deduplication_window = 10000;

-- Each view reads the per-call inputs of call_facts (0004_kpi_standards.sql) from the inserted block:
-- a seizure is a call the platform did not refuse, is_effective = a seizure answered or ended by the
-- user (E.425), the failure counts are over seizures.

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.rollup_hourly_mv{on_cluster} TO {db}.rollup_hourly AS
SELECT
    app_key,
    hour,
    service,
    service_type,
    count() AS attempts,
    sum(is_answered) AS answered,
    sum(is_seizure) AS seizures,
    sum(is_refused) AS refused,
    sum(is_effective) AS ner_numerator,
    sum(is_failed) AS failed,
    sum(is_user_busy) AS user_busy,
    sum(is_no_answer) AS no_answer,
    sum(is_user_rejected) AS user_rejected,
    sum(toUInt64(talk_seconds)) AS talk_seconds_sum,
    count(setup_seconds) AS setup_samples,
    sum(toUInt64(ifNull(setup_seconds, 0))) AS setup_seconds_sum,
    count(ring_seconds) AS ring_samples,
    sum(toUInt64(ifNull(ring_seconds, 0))) AS ring_seconds_sum,
    count(pdd_ms) AS pdd_samples,
    sum(toUInt64(ifNull(pdd_ms, 0))) AS pdd_ms_sum,
    sum(toUInt64(has_recording)) AS recordings,
    quantilesExactWeightedInterpolatedState(0.5, 0.95)(pdd_ms, toUInt64(1)) AS pdd_quantiles,
    quantilesExactWeightedInterpolatedState(0.5, 0.95)(ring_seconds, toUInt64(1)) AS ring_quantiles
FROM
(
    SELECT
        app_key, toStartOfHour(call_time) AS hour, service, service_type,
        toUInt64(answered) AS is_answered,
        toUInt64(refused = 0) AS is_seizure,
        toUInt64(refused) AS is_refused,
        toUInt64(refused = 0 AND (answered = 1 OR failure_category IN ('user_busy', 'no_answer', 'user_rejected')))
            AS is_effective,
        toUInt64(answered = 0 AND refused = 0) AS is_failed,
        toUInt64(failure_category = 'user_busy' AND refused = 0) AS is_user_busy,
        toUInt64(failure_category = 'no_answer' AND refused = 0) AS is_no_answer,
        toUInt64(failure_category = 'user_rejected' AND refused = 0) AS is_user_rejected,
        talk_seconds, setup_seconds, ring_seconds, pdd_ms, has_recording
    FROM {db}.cdrs
)
GROUP BY app_key, hour, service, service_type;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.rollup_by_number_mv{on_cluster} TO {db}.rollup_by_number AS
SELECT
    app_key,
    day,
    service,
    bind_num,
    count() AS attempts,
    sum(is_answered) AS answered,
    sum(is_seizure) AS seizures,
    sum(is_refused) AS refused,
    sum(is_effective) AS ner_numerator,
    sum(is_failed) AS failed,
    sum(is_user_busy) AS user_busy,
    sum(is_no_answer) AS no_answer,
    sum(is_user_rejected) AS user_rejected,
    sum(toUInt64(talk_seconds)) AS talk_seconds_sum,
    count(setup_seconds) AS setup_samples,
    sum(toUInt64(ifNull(setup_seconds, 0))) AS setup_seconds_sum,
    count(ring_seconds) AS ring_samples,
    sum(toUInt64(ifNull(ring_seconds, 0))) AS ring_seconds_sum,
    count(pdd_ms) AS pdd_samples,
    sum(toUInt64(ifNull(pdd_ms, 0))) AS pdd_ms_sum,
    sum(toUInt64(has_recording)) AS recordings,
    quantilesExactWeightedInterpolatedState(0.5, 0.95)(pdd_ms, toUInt64(1)) AS pdd_quantiles,
    quantilesExactWeightedInterpolatedState(0.5, 0.95)(ring_seconds, toUInt64(1)) AS ring_quantiles
FROM
(
    SELECT
        app_key, toDate(call_time) AS day, service, bind_num,
        toUInt64(answered) AS is_answered,
        toUInt64(refused = 0) AS is_seizure,
        toUInt64(refused) AS is_refused,
        toUInt64(refused = 0 AND (answered = 1 OR failure_category IN ('user_busy', 'no_answer', 'user_rejected')))
            AS is_effective,
        toUInt64(answered = 0 AND refused = 0) AS is_failed,
        toUInt64(failure_category = 'user_busy' AND refused = 0) AS is_user_busy,
        toUInt64(failure_category = 'no_answer' AND refused = 0) AS is_no_answer,
        toUInt64(failure_category = 'user_rejected' AND refused = 0) AS is_user_rejected,
        talk_seconds, setup_seconds, ring_seconds, pdd_ms, has_recording
    FROM {db}.cdrs
)
GROUP BY app_key, day, service, bind_num;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.rollup_by_binding_mv{on_cluster} TO {db}.rollup_by_binding AS
SELECT
    app_key,
    day,
    service,
    subscription_id,
    bind_num,
    count() AS attempts,
    sum(is_answered) AS answered,
    sum(is_seizure) AS seizures,
    sum(is_refused) AS refused,
    sum(is_effective) AS ner_numerator,
    sum(is_failed) AS failed,
    sum(is_user_busy) AS user_busy,
    sum(is_no_answer) AS no_answer,
    sum(is_user_rejected) AS user_rejected,
    sum(toUInt64(talk_seconds)) AS talk_seconds_sum,
    count(setup_seconds) AS setup_samples,
    sum(toUInt64(ifNull(setup_seconds, 0))) AS setup_seconds_sum,
    count(ring_seconds) AS ring_samples,
    sum(toUInt64(ifNull(ring_seconds, 0))) AS ring_seconds_sum,
    count(pdd_ms) AS pdd_samples,
    sum(toUInt64(ifNull(pdd_ms, 0))) AS pdd_ms_sum,
    sum(toUInt64(has_recording)) AS recordings,
    quantilesExactWeightedInterpolatedState(0.5, 0.95)(pdd_ms, toUInt64(1)) AS pdd_quantiles,
    quantilesExactWeightedInterpolatedState(0.5, 0.95)(ring_seconds, toUInt64(1)) AS ring_quantiles
FROM
(
    SELECT
        app_key, toDate(call_time) AS day, service, subscription_id, bind_num,
        toUInt64(answered) AS is_answered,
        toUInt64(refused = 0) AS is_seizure,
        toUInt64(refused) AS is_refused,
        toUInt64(refused = 0 AND (answered = 1 OR failure_category IN ('user_busy', 'no_answer', 'user_rejected')))
            AS is_effective,
        toUInt64(answered = 0 AND refused = 0) AS is_failed,
        toUInt64(failure_category = 'user_busy' AND refused = 0) AS is_user_busy,
        toUInt64(failure_category = 'no_answer' AND refused = 0) AS is_no_answer,
        toUInt64(failure_category = 'user_rejected' AND refused = 0) AS is_user_rejected,
        talk_seconds, setup_seconds, ring_seconds, pdd_ms, has_recording
    FROM {db}.cdrs
    WHERE subscription_id != ''
)
GROUP BY app_key, day, service, subscription_id, bind_num;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.rollup_failures_mv{on_cluster} TO {db}.rollup_failures AS
SELECT
    app_key,
    day,
    service,
    failure_category,
    failure_reason,
    count() AS calls,
    max(is_effective) AS user_caused,
    sum(is_refused) AS refused,
    any(failure_source) AS failure_source
FROM
(
    SELECT
        app_key, toDate(call_time) AS day, service, failure_category, failure_reason, failure_source,
        toUInt8(refused = 0 AND failure_category IN ('user_busy', 'no_answer', 'user_rejected')) AS is_effective,
        toUInt64(refused) AS is_refused
    FROM {db}.cdrs
    WHERE answered = 0
)
GROUP BY app_key, day, service, failure_category, failure_reason;

-- The public views: the names and columns of 0004_kpi_standards.sql, read from the rollups. The views
-- at the grain of their rollup (by number, by binding: many rows) read it with FINAL, which costs a
-- scan where the parts are merged; the others re-aggregate a few thousand rows with GROUP BY.

CREATE OR REPLACE VIEW {db}.kpi_hourly{on_cluster} AS
SELECT
    hour,
    app_key,
    service,
    attempts,
    answered,
    answered / nullIf(seizures, 0) AS asr,
    ner_numerator / nullIf(seizures, 0) AS ner,
    talk_seconds_sum / nullIf(answered, 0) AS acd_seconds,
    if(pdd_samples = 0, NULL, pdd_q[1] / 1000) AS pdd_p50_seconds,
    if(pdd_samples = 0, NULL, pdd_q[2] / 1000) AS pdd_p95_seconds,
    pdd_ms_sum / nullIf(pdd_samples, 0) / 1000 AS pdd_avg_seconds,
    pdd_samples,
    pdd_ms_sum,
    seizures,
    refused,
    ner_numerator,
    failed,
    user_busy,
    no_answer,
    user_rejected,
    talk_seconds_sum,
    setup_samples,
    setup_seconds_sum,
    ring_samples,
    ring_seconds_sum,
    ring_seconds_sum / nullIf(ring_samples, 0) AS ring_avg_seconds,
    if(ring_samples = 0, NULL, ring_q[2]) AS ring_p95_seconds,
    recordings
FROM
(
    SELECT
        hour, app_key, service,
        sum(attempts) AS attempts,
        sum(answered) AS answered,
        sum(seizures) AS seizures,
        sum(refused) AS refused,
        sum(ner_numerator) AS ner_numerator,
        sum(failed) AS failed,
        sum(user_busy) AS user_busy,
        sum(no_answer) AS no_answer,
        sum(user_rejected) AS user_rejected,
        sum(talk_seconds_sum) AS talk_seconds_sum,
        sum(setup_samples) AS setup_samples,
        sum(setup_seconds_sum) AS setup_seconds_sum,
        sum(ring_samples) AS ring_samples,
        sum(ring_seconds_sum) AS ring_seconds_sum,
        sum(pdd_samples) AS pdd_samples,
        sum(pdd_ms_sum) AS pdd_ms_sum,
        sum(recordings) AS recordings,
        quantilesExactWeightedInterpolatedMerge(0.5, 0.95)(pdd_quantiles) AS pdd_q,
        quantilesExactWeightedInterpolatedMerge(0.5, 0.95)(ring_quantiles) AS ring_q
    FROM {db}.rollup_hourly
    GROUP BY hour, app_key, service
);

CREATE OR REPLACE VIEW {db}.kpi_daily{on_cluster} AS
SELECT
    day,
    app_key,
    service,
    attempts,
    answered,
    answered / nullIf(seizures, 0) AS asr,
    ner_numerator / nullIf(seizures, 0) AS ner,
    talk_seconds_sum / nullIf(answered, 0) AS acd_seconds,
    if(pdd_samples = 0, NULL, pdd_q[1] / 1000) AS pdd_p50_seconds,
    if(pdd_samples = 0, NULL, pdd_q[2] / 1000) AS pdd_p95_seconds,
    pdd_ms_sum / nullIf(pdd_samples, 0) / 1000 AS pdd_avg_seconds,
    pdd_samples,
    pdd_ms_sum,
    seizures,
    refused,
    ner_numerator,
    failed,
    user_busy,
    no_answer,
    user_rejected,
    talk_seconds_sum,
    setup_samples,
    setup_seconds_sum,
    ring_samples,
    ring_seconds_sum,
    ring_seconds_sum / nullIf(ring_samples, 0) AS ring_avg_seconds,
    if(ring_samples = 0, NULL, ring_q[2]) AS ring_p95_seconds,
    recordings
FROM
(
    SELECT
        toDate(hour) AS day, app_key, service,
        sum(attempts) AS attempts,
        sum(answered) AS answered,
        sum(seizures) AS seizures,
        sum(refused) AS refused,
        sum(ner_numerator) AS ner_numerator,
        sum(failed) AS failed,
        sum(user_busy) AS user_busy,
        sum(no_answer) AS no_answer,
        sum(user_rejected) AS user_rejected,
        sum(talk_seconds_sum) AS talk_seconds_sum,
        sum(setup_samples) AS setup_samples,
        sum(setup_seconds_sum) AS setup_seconds_sum,
        sum(ring_samples) AS ring_samples,
        sum(ring_seconds_sum) AS ring_seconds_sum,
        sum(pdd_samples) AS pdd_samples,
        sum(pdd_ms_sum) AS pdd_ms_sum,
        sum(recordings) AS recordings,
        quantilesExactWeightedInterpolatedMerge(0.5, 0.95)(pdd_quantiles) AS pdd_q,
        quantilesExactWeightedInterpolatedMerge(0.5, 0.95)(ring_quantiles) AS ring_q
    FROM {db}.rollup_hourly
    GROUP BY day, app_key, service
);

CREATE OR REPLACE VIEW {db}.kpi_by_service_type{on_cluster} AS
SELECT
    day,
    app_key,
    service,
    service_type,
    attempts,
    answered,
    answered / nullIf(seizures, 0) AS asr,
    ner_numerator / nullIf(seizures, 0) AS ner,
    talk_seconds_sum / nullIf(answered, 0) AS acd_seconds,
    if(pdd_samples = 0, NULL, pdd_q[1] / 1000) AS pdd_p50_seconds,
    if(pdd_samples = 0, NULL, pdd_q[2] / 1000) AS pdd_p95_seconds,
    pdd_ms_sum / nullIf(pdd_samples, 0) / 1000 AS pdd_avg_seconds,
    pdd_samples,
    pdd_ms_sum,
    seizures,
    refused,
    ner_numerator,
    failed,
    user_busy,
    no_answer,
    user_rejected,
    talk_seconds_sum,
    setup_samples,
    setup_seconds_sum,
    ring_samples,
    ring_seconds_sum,
    ring_seconds_sum / nullIf(ring_samples, 0) AS ring_avg_seconds,
    if(ring_samples = 0, NULL, ring_q[2]) AS ring_p95_seconds,
    recordings
FROM
(
    SELECT
        toDate(hour) AS day, app_key, service, service_type,
        sum(attempts) AS attempts,
        sum(answered) AS answered,
        sum(seizures) AS seizures,
        sum(refused) AS refused,
        sum(ner_numerator) AS ner_numerator,
        sum(failed) AS failed,
        sum(user_busy) AS user_busy,
        sum(no_answer) AS no_answer,
        sum(user_rejected) AS user_rejected,
        sum(talk_seconds_sum) AS talk_seconds_sum,
        sum(setup_samples) AS setup_samples,
        sum(setup_seconds_sum) AS setup_seconds_sum,
        sum(ring_samples) AS ring_samples,
        sum(ring_seconds_sum) AS ring_seconds_sum,
        sum(pdd_samples) AS pdd_samples,
        sum(pdd_ms_sum) AS pdd_ms_sum,
        sum(recordings) AS recordings,
        quantilesExactWeightedInterpolatedMerge(0.5, 0.95)(pdd_quantiles) AS pdd_q,
        quantilesExactWeightedInterpolatedMerge(0.5, 0.95)(ring_quantiles) AS ring_q
    FROM {db}.rollup_hourly
    GROUP BY day, app_key, service, service_type
);

CREATE OR REPLACE VIEW {db}.kpi_by_number{on_cluster} AS
SELECT
    day,
    app_key,
    service,
    bind_num,
    attempts,
    answered,
    answered / nullIf(seizures, 0) AS asr,
    ner_numerator / nullIf(seizures, 0) AS ner,
    talk_seconds_sum / nullIf(answered, 0) AS acd_seconds,
    if(pdd_samples = 0, NULL, pdd_q[1] / 1000) AS pdd_p50_seconds,
    if(pdd_samples = 0, NULL, pdd_q[2] / 1000) AS pdd_p95_seconds,
    pdd_ms_sum / nullIf(pdd_samples, 0) / 1000 AS pdd_avg_seconds,
    pdd_samples,
    pdd_ms_sum,
    seizures,
    refused,
    ner_numerator,
    failed,
    user_busy,
    no_answer,
    user_rejected,
    talk_seconds_sum,
    setup_samples,
    setup_seconds_sum,
    ring_samples,
    ring_seconds_sum,
    ring_seconds_sum / nullIf(ring_samples, 0) AS ring_avg_seconds,
    if(ring_samples = 0, NULL, ring_q[2]) AS ring_p95_seconds,
    recordings
FROM
(
    -- one row per key: FINAL merges the parts that still hold the same key as it reads (toUInt64:
    -- the view's types are those of 0004, not SimpleAggregateFunction)
    SELECT
        day, app_key, service, bind_num,
        toUInt64(attempts) AS attempts,
        toUInt64(answered) AS answered,
        toUInt64(seizures) AS seizures,
        toUInt64(refused) AS refused,
        toUInt64(ner_numerator) AS ner_numerator,
        toUInt64(failed) AS failed,
        toUInt64(user_busy) AS user_busy,
        toUInt64(no_answer) AS no_answer,
        toUInt64(user_rejected) AS user_rejected,
        toUInt64(talk_seconds_sum) AS talk_seconds_sum,
        toUInt64(setup_samples) AS setup_samples,
        toUInt64(setup_seconds_sum) AS setup_seconds_sum,
        toUInt64(ring_samples) AS ring_samples,
        toUInt64(ring_seconds_sum) AS ring_seconds_sum,
        toUInt64(pdd_samples) AS pdd_samples,
        toUInt64(pdd_ms_sum) AS pdd_ms_sum,
        toUInt64(recordings) AS recordings,
        finalizeAggregation(pdd_quantiles) AS pdd_q, finalizeAggregation(ring_quantiles) AS ring_q
    FROM {db}.rollup_by_number FINAL
);

CREATE OR REPLACE VIEW {db}.kpi_by_binding{on_cluster} AS
SELECT
    day,
    app_key,
    service,
    subscription_id,
    bind_num,
    attempts,
    answered,
    answered / nullIf(seizures, 0) AS asr,
    ner_numerator / nullIf(seizures, 0) AS ner,
    talk_seconds_sum / nullIf(answered, 0) AS acd_seconds,
    if(pdd_samples = 0, NULL, pdd_q[1] / 1000) AS pdd_p50_seconds,
    if(pdd_samples = 0, NULL, pdd_q[2] / 1000) AS pdd_p95_seconds,
    pdd_ms_sum / nullIf(pdd_samples, 0) / 1000 AS pdd_avg_seconds,
    pdd_samples,
    pdd_ms_sum,
    seizures,
    refused,
    ner_numerator,
    failed,
    user_busy,
    no_answer,
    user_rejected,
    talk_seconds_sum,
    setup_samples,
    setup_seconds_sum,
    ring_samples,
    ring_seconds_sum,
    ring_seconds_sum / nullIf(ring_samples, 0) AS ring_avg_seconds,
    if(ring_samples = 0, NULL, ring_q[2]) AS ring_p95_seconds,
    recordings
FROM
(
    -- one row per key: FINAL merges the parts that still hold the same key as it reads (toUInt64:
    -- the view's types are those of 0004, not SimpleAggregateFunction)
    SELECT
        day, app_key, service, subscription_id, bind_num,
        toUInt64(attempts) AS attempts,
        toUInt64(answered) AS answered,
        toUInt64(seizures) AS seizures,
        toUInt64(refused) AS refused,
        toUInt64(ner_numerator) AS ner_numerator,
        toUInt64(failed) AS failed,
        toUInt64(user_busy) AS user_busy,
        toUInt64(no_answer) AS no_answer,
        toUInt64(user_rejected) AS user_rejected,
        toUInt64(talk_seconds_sum) AS talk_seconds_sum,
        toUInt64(setup_samples) AS setup_samples,
        toUInt64(setup_seconds_sum) AS setup_seconds_sum,
        toUInt64(ring_samples) AS ring_samples,
        toUInt64(ring_seconds_sum) AS ring_seconds_sum,
        toUInt64(pdd_samples) AS pdd_samples,
        toUInt64(pdd_ms_sum) AS pdd_ms_sum,
        toUInt64(recordings) AS recordings,
        finalizeAggregation(pdd_quantiles) AS pdd_q, finalizeAggregation(ring_quantiles) AS ring_q
    FROM {db}.rollup_by_binding FINAL
);

CREATE OR REPLACE VIEW {db}.failure_causes{on_cluster} AS
SELECT
    day,
    app_key,
    service,
    failure_category,
    failure_reason,
    sum(calls) AS calls,
    toUInt8(max(user_caused)) AS user_caused,
    sum(refused) AS refused,
    toString(any(failure_source)) AS failure_source
FROM {db}.rollup_failures
GROUP BY day, app_key, service, failure_category, failure_reason;
