-- Analytics views over the CDRs (docs/analytics.md lists their columns and example queries).
-- Placeholders: {db}, {on_cluster} (see 0001_tables.sql). On a cluster these plain views read
-- {db}.cdrs, which is the Distributed table, so every shard answers its part of each query.
--
-- Every view is a plain VIEW computed at query time from `cdrs FINAL`: a CDR counts once however
-- often it was pushed (the loader drops known dedup keys, FINAL collapses any duplicate row that
-- still reached the table), and a late CDR shows up in its own hour as soon as it is loaded.
-- Views expose counts and sums next to the ratios, so wider windows are re-aggregated exactly:
-- sum the numerators and the denominators, never average the ratios.
--
-- KPIs (one CDR = one call attempt):
--   asr  = answered / attempts                                  ITU-T E.411 answer seizure ratio
--   ner  = (answered + user_busy + no_answer + user_rejected) / attempts   ITU-T E.425 NER
--   acd  = talk seconds / answered                              average call duration
--   pdd  = setup_seconds (leg start to alerting) p50 / p95      post-dial delay
-- A ratio is NULL when its denominator is 0 (no attempts, no answered call, no setup sample).
-- Quantiles are exact (quantileExactInclusive, linear interpolation between order statistics).
-- No line below may contain a semicolon except at a statement end (migrate splits on them).

CREATE VIEW IF NOT EXISTS {db}.call_facts{on_cluster} AS
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
    toUInt8(answered = 1 OR failure_category IN ('user_busy', 'no_answer', 'user_rejected')) AS is_effective,
    talk_seconds,
    ring_seconds,
    setup_seconds,
    has_recording,
    failure_category,
    failure_reason
FROM {db}.cdrs FINAL;

CREATE VIEW IF NOT EXISTS {db}.kpi_hourly{on_cluster} AS
SELECT
    hour,
    app_key,
    service,
    count() AS attempts,
    sum(is_answered) AS answered,
    answered / nullIf(attempts, 0) AS asr,
    ner_numerator / nullIf(attempts, 0) AS ner,
    talk_seconds_sum / nullIf(answered, 0) AS acd_seconds,
    quantileExactInclusive(0.5)(setup_seconds) AS pdd_p50_seconds,
    quantileExactInclusive(0.95)(setup_seconds) AS pdd_p95_seconds,
    sum(is_effective) AS ner_numerator,
    countIf(is_answered = 0) AS failed,
    countIf(failure_category = 'user_busy') AS user_busy,
    countIf(failure_category = 'no_answer') AS no_answer,
    countIf(failure_category = 'user_rejected') AS user_rejected,
    sum(toUInt64(talk_seconds)) AS talk_seconds_sum,
    count(setup_seconds) AS setup_samples,
    sum(toUInt64(ifNull(setup_seconds, 0))) AS setup_seconds_sum,
    count(ring_seconds) AS ring_samples,
    sum(toUInt64(ifNull(ring_seconds, 0))) AS ring_seconds_sum,
    ring_seconds_sum / nullIf(ring_samples, 0) AS ring_avg_seconds,
    quantileExactInclusive(0.95)(ring_seconds) AS ring_p95_seconds,
    sum(has_recording) AS recordings
FROM {db}.call_facts
GROUP BY hour, app_key, service;

CREATE VIEW IF NOT EXISTS {db}.kpi_daily{on_cluster} AS
SELECT
    day,
    app_key,
    service,
    count() AS attempts,
    sum(is_answered) AS answered,
    answered / nullIf(attempts, 0) AS asr,
    ner_numerator / nullIf(attempts, 0) AS ner,
    talk_seconds_sum / nullIf(answered, 0) AS acd_seconds,
    quantileExactInclusive(0.5)(setup_seconds) AS pdd_p50_seconds,
    quantileExactInclusive(0.95)(setup_seconds) AS pdd_p95_seconds,
    sum(is_effective) AS ner_numerator,
    countIf(is_answered = 0) AS failed,
    countIf(failure_category = 'user_busy') AS user_busy,
    countIf(failure_category = 'no_answer') AS no_answer,
    countIf(failure_category = 'user_rejected') AS user_rejected,
    sum(toUInt64(talk_seconds)) AS talk_seconds_sum,
    count(setup_seconds) AS setup_samples,
    sum(toUInt64(ifNull(setup_seconds, 0))) AS setup_seconds_sum,
    count(ring_seconds) AS ring_samples,
    sum(toUInt64(ifNull(ring_seconds, 0))) AS ring_seconds_sum,
    ring_seconds_sum / nullIf(ring_samples, 0) AS ring_avg_seconds,
    quantileExactInclusive(0.95)(ring_seconds) AS ring_p95_seconds,
    sum(has_recording) AS recordings
FROM {db}.call_facts
GROUP BY day, app_key, service;

CREATE VIEW IF NOT EXISTS {db}.kpi_by_service_type{on_cluster} AS
SELECT
    day,
    app_key,
    service,
    service_type,
    count() AS attempts,
    sum(is_answered) AS answered,
    answered / nullIf(attempts, 0) AS asr,
    ner_numerator / nullIf(attempts, 0) AS ner,
    talk_seconds_sum / nullIf(answered, 0) AS acd_seconds,
    quantileExactInclusive(0.5)(setup_seconds) AS pdd_p50_seconds,
    quantileExactInclusive(0.95)(setup_seconds) AS pdd_p95_seconds,
    sum(is_effective) AS ner_numerator,
    sum(toUInt64(talk_seconds)) AS talk_seconds_sum,
    count(setup_seconds) AS setup_samples,
    sum(has_recording) AS recordings
FROM {db}.call_facts
GROUP BY day, app_key, service, service_type;

CREATE VIEW IF NOT EXISTS {db}.kpi_by_number{on_cluster} AS
SELECT
    day,
    app_key,
    service,
    bind_num,
    count() AS attempts,
    sum(is_answered) AS answered,
    answered / nullIf(attempts, 0) AS asr,
    ner_numerator / nullIf(attempts, 0) AS ner,
    talk_seconds_sum / nullIf(answered, 0) AS acd_seconds,
    quantileExactInclusive(0.5)(setup_seconds) AS pdd_p50_seconds,
    quantileExactInclusive(0.95)(setup_seconds) AS pdd_p95_seconds,
    ring_seconds_sum / nullIf(ring_samples, 0) AS ring_avg_seconds,
    sum(is_effective) AS ner_numerator,
    countIf(is_answered = 0) AS failed,
    sum(toUInt64(talk_seconds)) AS talk_seconds_sum,
    count(setup_seconds) AS setup_samples,
    count(ring_seconds) AS ring_samples,
    sum(toUInt64(ifNull(ring_seconds, 0))) AS ring_seconds_sum,
    sum(has_recording) AS recordings
FROM {db}.call_facts
GROUP BY day, app_key, service, bind_num;

CREATE VIEW IF NOT EXISTS {db}.kpi_by_binding{on_cluster} AS
SELECT
    day,
    app_key,
    service,
    subscription_id,
    bind_num,
    count() AS attempts,
    sum(is_answered) AS answered,
    answered / nullIf(attempts, 0) AS asr,
    ner_numerator / nullIf(attempts, 0) AS ner,
    talk_seconds_sum / nullIf(answered, 0) AS acd_seconds,
    quantileExactInclusive(0.5)(setup_seconds) AS pdd_p50_seconds,
    quantileExactInclusive(0.95)(setup_seconds) AS pdd_p95_seconds,
    sum(is_effective) AS ner_numerator,
    countIf(is_answered = 0) AS failed,
    sum(toUInt64(talk_seconds)) AS talk_seconds_sum,
    count(setup_seconds) AS setup_samples,
    sum(has_recording) AS recordings
FROM {db}.call_facts
WHERE subscription_id != ''
GROUP BY day, app_key, service, subscription_id, bind_num;

CREATE VIEW IF NOT EXISTS {db}.failure_causes{on_cluster} AS
SELECT
    day,
    app_key,
    service,
    failure_category,
    failure_reason,
    count() AS calls,
    max(is_effective) AS user_caused
FROM {db}.call_facts
WHERE is_answered = 0
GROUP BY day, app_key, service, failure_category, failure_reason;

-- One row per call event plus one row per CDR of the session, to read a call in time order:
-- SELECT * FROM {db}.call_timeline WHERE session_id = '...' ORDER BY time, seq
-- (both branches are filtered by session_id, which has a bloom-filter index in both tables).
CREATE VIEW IF NOT EXISTS {db}.call_timeline{on_cluster} AS
SELECT
    session_id,
    app_key,
    service,
    event_time AS time,
    event_seq AS seq,
    'event' AS source,
    toString(event_type) AS kind,
    leg,
    caller,
    called,
    state_code AS code,
    state_code_desc AS detail,
    toString(failure_category) AS failure_category
FROM {db}.call_events FINAL
UNION ALL
SELECT
    session_id,
    app_key,
    service,
    ifNull(call_end_time, ifNull(fail_time, call_time)) AS time,
    toUInt8(6) AS seq,
    'cdr' AS source,
    if(answered = 1, 'answered', 'not answered') AS kind,
    toUInt8(0) AS leg,
    caller_num AS caller,
    callee_num AS called,
    ul_fail_reason AS code,
    if(answered = 1, concat('talk ', toString(talk_seconds), ' s'), failure_reason) AS detail,
    toString(failure_category) AS failure_category
FROM {db}.cdrs FINAL;
