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
@rollup_columns
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
@rollup_columns
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
@rollup_columns
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
@mv_counts
@mv_states
FROM
(
    SELECT
        app_key, toStartOfHour(call_time) AS hour, service, service_type,
@mv_call_flags
    FROM {db}.cdrs
)
GROUP BY app_key, hour, service, service_type;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.rollup_by_number_mv{on_cluster} TO {db}.rollup_by_number AS
SELECT
    app_key,
    day,
    service,
    bind_num,
@mv_counts
@mv_states
FROM
(
    SELECT
        app_key, toDate(call_time) AS day, service, bind_num,
@mv_call_flags
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
@mv_counts
@mv_states
FROM
(
    SELECT
        app_key, toDate(call_time) AS day, service, subscription_id, bind_num,
@mv_call_flags
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
@view_columns
FROM
(
    SELECT
        hour, app_key, service,
@view_sum_counts
@view_sum_states
    FROM {db}.rollup_hourly
    GROUP BY hour, app_key, service
);

CREATE OR REPLACE VIEW {db}.kpi_daily{on_cluster} AS
SELECT
    day,
    app_key,
    service,
@view_columns
FROM
(
    SELECT
        toDate(hour) AS day, app_key, service,
@view_sum_counts
@view_sum_states
    FROM {db}.rollup_hourly
    GROUP BY day, app_key, service
);

CREATE OR REPLACE VIEW {db}.kpi_by_service_type{on_cluster} AS
SELECT
    day,
    app_key,
    service,
    service_type,
@view_columns
FROM
(
    SELECT
        toDate(hour) AS day, app_key, service, service_type,
@view_sum_counts
@view_sum_states
    FROM {db}.rollup_hourly
    GROUP BY day, app_key, service, service_type
);

CREATE OR REPLACE VIEW {db}.kpi_by_number{on_cluster} AS
SELECT
    day,
    app_key,
    service,
    bind_num,
@view_columns
FROM
(
    -- one row per key: FINAL merges the parts that still hold the same key as it reads (toUInt64:
    -- the view's types are those of 0004, not SimpleAggregateFunction)
    SELECT
        day, app_key, service, bind_num,
@view_final_counts
@view_final_states
    FROM {db}.rollup_by_number FINAL
);

CREATE OR REPLACE VIEW {db}.kpi_by_binding{on_cluster} AS
SELECT
    day,
    app_key,
    service,
    subscription_id,
    bind_num,
@view_columns
FROM
(
    -- one row per key: FINAL merges the parts that still hold the same key as it reads (toUInt64:
    -- the view's types are those of 0004, not SimpleAggregateFunction)
    SELECT
        day, app_key, service, subscription_id, bind_num,
@view_final_counts
@view_final_states
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
