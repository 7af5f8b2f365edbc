-- The quantiles of the views computed by ClickHouse's own weighted quantile over the histograms
-- (arrayReduce of quantilesExactWeightedInterpolated over value -> calls), in place of 0014's
-- hand-written R-7 lambdas. Same values: quantilesExactWeightedInterpolated is R-7 over the expanded
-- calls, i.e. quantileExactInclusive over the CDRs (0011's estimator; tests/test_rollups.py compares
-- every view with the views over cdrs FINAL). Why: the lambdas evaluated arrayCumSum six times per
-- quantile, a long expression the analyzer works through on every query before it reads a row. Measured
-- on 10 M generated CDRs, engine time, 0014 and 0015 views alternating over the same rollups (min of 7,
-- bench/view_versions.py): one app and one day x1.20-1.43 faster (kpi_hourly 39.7 -> 32.4 ms,
-- kpi_by_binding 42.0 -> 29.4 ms); the whole range x0.95-1.10 (kpi_hourly 257 -> 270 ms: an aggregate
-- state per row of 11,520; kpi_daily 55.8 -> 50.8 ms); the top 20 of kpi_by_binding over 5 M binding
-- rows 1.20 -> 1.15 s (bound by FINAL, docs/analytics.md).
-- Views only: no data moves.
-- Placeholders as in 0001_tables.sql.
-- No line below may contain a semicolon except at a statement end (migrate splits on them).

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
@view_hist_quantiles
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
@view_hist_quantiles
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
@view_hist_quantiles
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
@view_final_quantiles
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
@view_final_quantiles
    FROM {db}.rollup_by_binding FINAL
);
