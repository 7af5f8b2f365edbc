-- KPI definitions by their standards (docs/analytics.md, "KPI definitions"). Placeholders as in 0001.
--
-- New CDR columns, derived per call by consumers/outcome.py:
--   failure_source  which code decided failure_category: q850, teardown, sip, or '' (answered / none)
--   refused         1 when the platform refused the call itself (frequency control, blacklist,
--                   configuration) before any seizure: reported apart, outside ASR and NER
--   pdd_ms          RFC 6076 session request delay in ms: leg start to alerting (else answer, else
--                   the failure of a failed setup); NULL without a request or with contradicting times
-- CDRs loaded before this migration read refused = 0, failure_source = '' and pdd_ms = NULL
-- (`callstream replay` derives them again).
--
-- The metric columns are written once, in kpi_grains (one GROUPING SETS query over call_facts);
-- every kpi_* view is a slice of it, so each of them has every numerator and denominator:
--   asr  = answered / seizures                                  ITU-T E.411
--   ner  = ner_numerator / seizures                             ITU-T E.425
--   acd  = talk_seconds_sum / answered
--   pdd  = pdd_ms_sum / pdd_samples (average), exact p50 / p95  RFC 6076 SRD
-- seizures = attempts - refused. A ratio is NULL when its denominator is 0.
-- No line below may contain a semicolon except at a statement end (migrate splits on them).

ALTER TABLE {db}.cdrs{on_cluster}
    ADD COLUMN IF NOT EXISTS failure_source LowCardinality(String) AFTER failure_reason,
    ADD COLUMN IF NOT EXISTS refused UInt8 AFTER failure_source,
    ADD COLUMN IF NOT EXISTS pdd_ms Nullable(UInt32) AFTER setup_seconds;

CREATE OR REPLACE VIEW {db}.call_facts{on_cluster} AS
SELECT
    dedup_key,
    session_id,
    notification_id,
    call_time,
    toStartOfHour(call_time) AS hour,
    toDate(call_time) AS day,
    app_key,
    service,
    service_type,
    bind_num,
    subscription_id,
    answered AS is_answered,
    toUInt8(refused = 0 AND (answered = 1 OR failure_category IN ('user_busy', 'no_answer', 'user_rejected')))
        AS is_effective,
    talk_seconds,
    ring_seconds,
    setup_seconds,
    has_recording,
    failure_category,
    failure_reason,
    refused AS is_refused,
    toUInt8(refused = 0) AS is_seizure,
    pdd_ms,
    failure_source
FROM {db}.cdrs FINAL;

CREATE OR REPLACE VIEW {db}.kpi_grains{on_cluster} AS
SELECT
    multiIf(grouping(hour) = 0, 'hourly', grouping(service_type) = 0, 'service_type',
            grouping(subscription_id) = 0, 'binding', grouping(bind_num) = 0, 'number', 'daily') AS grain,
    hour,
    day,
    app_key,
    service,
    service_type,
    subscription_id,
    bind_num,
    count() AS attempts,
    sum(is_answered) AS answered,
    answered / nullIf(seizures, 0) AS asr,
    ner_numerator / nullIf(seizures, 0) AS ner,
    talk_seconds_sum / nullIf(answered, 0) AS acd_seconds,
    quantileExactInclusive(0.5)(pdd_ms) / 1000 AS pdd_p50_seconds,
    quantileExactInclusive(0.95)(pdd_ms) / 1000 AS pdd_p95_seconds,
    pdd_ms_sum / nullIf(pdd_samples, 0) / 1000 AS pdd_avg_seconds,
    count(pdd_ms) AS pdd_samples,
    sum(toUInt64(ifNull(pdd_ms, 0))) AS pdd_ms_sum,
    sum(is_seizure) AS seizures,
    sum(is_refused) AS refused,
    sum(is_effective) AS ner_numerator,
    countIf(is_answered = 0 AND is_seizure = 1) AS failed,
    countIf(failure_category = 'user_busy' AND is_seizure = 1) AS user_busy,
    countIf(failure_category = 'no_answer' AND is_seizure = 1) AS no_answer,
    countIf(failure_category = 'user_rejected' AND is_seizure = 1) AS user_rejected,
    sum(toUInt64(talk_seconds)) AS talk_seconds_sum,
    count(setup_seconds) AS setup_samples,
    sum(toUInt64(ifNull(setup_seconds, 0))) AS setup_seconds_sum,
    count(ring_seconds) AS ring_samples,
    sum(toUInt64(ifNull(ring_seconds, 0))) AS ring_seconds_sum,
    ring_seconds_sum / nullIf(ring_samples, 0) AS ring_avg_seconds,
    quantileExactInclusive(0.95)(ring_seconds) AS ring_p95_seconds,
    sum(has_recording) AS recordings
FROM {db}.call_facts
GROUP BY GROUPING SETS (
    (hour, day, app_key, service),
    (day, app_key, service),
    (day, app_key, service, service_type),
    (day, app_key, service, bind_num),
    (day, app_key, service, subscription_id, bind_num)
);

CREATE OR REPLACE VIEW {db}.kpi_hourly{on_cluster} AS
SELECT hour, app_key, service,
       * EXCEPT (grain, hour, day, app_key, service, service_type, subscription_id, bind_num)
FROM {db}.kpi_grains
WHERE grain = 'hourly';

CREATE OR REPLACE VIEW {db}.kpi_daily{on_cluster} AS
SELECT day, app_key, service,
       * EXCEPT (grain, hour, day, app_key, service, service_type, subscription_id, bind_num)
FROM {db}.kpi_grains
WHERE grain = 'daily';

CREATE OR REPLACE VIEW {db}.kpi_by_service_type{on_cluster} AS
SELECT day, app_key, service, service_type,
       * EXCEPT (grain, hour, day, app_key, service, service_type, subscription_id, bind_num)
FROM {db}.kpi_grains
WHERE grain = 'service_type';

CREATE OR REPLACE VIEW {db}.kpi_by_number{on_cluster} AS
SELECT day, app_key, service, bind_num,
       * EXCEPT (grain, hour, day, app_key, service, service_type, subscription_id, bind_num)
FROM {db}.kpi_grains
WHERE grain = 'number';

CREATE OR REPLACE VIEW {db}.kpi_by_binding{on_cluster} AS
SELECT day, app_key, service, subscription_id, bind_num,
       * EXCEPT (grain, hour, day, app_key, service, service_type, subscription_id, bind_num)
FROM {db}.kpi_grains
WHERE grain = 'binding' AND subscription_id != '';

CREATE OR REPLACE VIEW {db}.failure_causes{on_cluster} AS
SELECT
    day,
    app_key,
    service,
    failure_category,
    failure_reason,
    count() AS calls,
    max(is_effective) AS user_caused,
    sum(is_refused) AS refused,
    any(failure_source) AS failure_source
FROM {db}.call_facts
WHERE is_answered = 0
GROUP BY day, app_key, service, failure_category, failure_reason;
