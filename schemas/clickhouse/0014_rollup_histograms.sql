-- PDD and ring-time quantiles from value -> calls histograms, so a top-N over the rollups reads plain
-- columns. Placeholders as in 0001_tables.sql.
--
-- 0011 kept quantilesExactWeightedInterpolated states. Reading a state means deserialising a hash
-- table per row: about 1.5 s per state column for 5 M rows of rollup_by_binding (what 100 M CDRs
-- give), whatever the query needs of it, and FINAL turns off lazy materialization, so
-- `SELECT * FROM kpi_by_binding ORDER BY attempts DESC LIMIT 20` read both states of every row
-- (3.7 s at 100 M CDRs, bench/results/analytics_100m.json). The same map, value -> calls, is kept
-- here as two arrays merged by sumMap (a SimpleAggregateFunction: a plain column, read at the speed
-- of its bytes), and the views compute the quantiles from it: h = (n - 1) * p, the value at
-- position floor(h) plus (h - floor(h)) times the step to the value at ceil(h) (R-7, as
-- quantileExactInclusive over the CDRs: exact, tests/test_rollups.py compares every view with the
-- views over cdrs FINAL). pdd_ms and ring_seconds come from times with whole seconds, so a histogram
-- holds a few dozen entries however many calls it counts.
--
-- The materialized views are dropped and defined again over the new columns, and migrate refills
-- their rollups from cdrs FINAL (as for 0011): run it with the consumers stopped.
-- No line below may contain a semicolon except at a statement end (migrate splits on them).

DROP VIEW IF EXISTS {db}.rollup_hourly_mv{on_cluster};
DROP VIEW IF EXISTS {db}.rollup_by_number_mv{on_cluster};
DROP VIEW IF EXISTS {db}.rollup_by_binding_mv{on_cluster};

ALTER TABLE {db}.rollup_hourly{on_cluster}
    ADD COLUMN IF NOT EXISTS pdd_hist SimpleAggregateFunction(sumMap, Tuple(Array(UInt32), Array(UInt64))),
    ADD COLUMN IF NOT EXISTS ring_hist SimpleAggregateFunction(sumMap, Tuple(Array(UInt32), Array(UInt64)));

ALTER TABLE {db}.rollup_by_number{on_cluster}
    ADD COLUMN IF NOT EXISTS pdd_hist SimpleAggregateFunction(sumMap, Tuple(Array(UInt32), Array(UInt64))),
    ADD COLUMN IF NOT EXISTS ring_hist SimpleAggregateFunction(sumMap, Tuple(Array(UInt32), Array(UInt64)));

ALTER TABLE {db}.rollup_by_binding{on_cluster}
    ADD COLUMN IF NOT EXISTS pdd_hist SimpleAggregateFunction(sumMap, Tuple(Array(UInt32), Array(UInt64))),
    ADD COLUMN IF NOT EXISTS ring_hist SimpleAggregateFunction(sumMap, Tuple(Array(UInt32), Array(UInt64)));

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
@view_hist_maps
@view_hist_quantiles_r7
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
@view_hist_maps
@view_hist_quantiles_r7
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
@view_hist_maps
@view_hist_quantiles_r7
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
@view_final_quantiles_r7
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
@view_final_quantiles_r7
    FROM {db}.rollup_by_binding FINAL
);

ALTER TABLE {db}.rollup_hourly{on_cluster}
    DROP COLUMN IF EXISTS pdd_quantiles,
    DROP COLUMN IF EXISTS ring_quantiles;

ALTER TABLE {db}.rollup_by_number{on_cluster}
    DROP COLUMN IF EXISTS pdd_quantiles,
    DROP COLUMN IF EXISTS ring_quantiles;

ALTER TABLE {db}.rollup_by_binding{on_cluster}
    DROP COLUMN IF EXISTS pdd_quantiles,
    DROP COLUMN IF EXISTS ring_quantiles;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.rollup_hourly_mv{on_cluster} TO {db}.rollup_hourly AS
SELECT
    app_key,
    hour,
    service,
    service_type,
@mv_counts
@mv_hist
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
@mv_hist
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
@mv_hist
FROM
(
    SELECT
        app_key, toDate(call_time) AS day, service, subscription_id, bind_num,
@mv_call_flags
    FROM {db}.cdrs
    WHERE subscription_id != ''
)
GROUP BY app_key, day, service, subscription_id, bind_num;
