-- Blocks of SQL that several migrations share, one definition each. A line ``@name`` (alone, at the
-- start of the line) in a migration file stands for the block ``name`` below, expanded by
-- schemas/migrate.py before anything else (the checksum is that of the expanded text). A block runs
-- from its ``-- @block name`` line to the next one or the end of the file, its last newline excluded.
-- Every block keeps its indentation: it is pasted as it stands.
-- Several @name lines in a row paste their blocks one after the other: the sums every view and
-- materialized view shares are one block, the quantile columns of each migration another.

-- @block rollup_columns
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

-- @block mv_counts
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

-- @block mv_states
    quantilesExactWeightedInterpolatedState(0.5, 0.95)(pdd_ms, toUInt64(1)) AS pdd_quantiles,
    quantilesExactWeightedInterpolatedState(0.5, 0.95)(ring_seconds, toUInt64(1)) AS ring_quantiles

-- @block mv_hist
    sumMapIf(([toUInt32(assumeNotNull(pdd_ms))], [toUInt64(1)]), pdd_ms IS NOT NULL) AS pdd_hist,
    sumMapIf(([toUInt32(assumeNotNull(ring_seconds))], [toUInt64(1)]), ring_seconds IS NOT NULL) AS ring_hist

-- @block mv_call_flags
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

-- @block view_columns
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

-- @block view_sum_counts
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

-- @block view_sum_states
        quantilesExactWeightedInterpolatedMerge(0.5, 0.95)(pdd_quantiles) AS pdd_q,
        quantilesExactWeightedInterpolatedMerge(0.5, 0.95)(ring_quantiles) AS ring_q

-- @block view_hist_maps
        sumMap(pdd_hist) AS pdd_h,
        sumMap(ring_hist) AS ring_h,

-- @block view_hist_quantiles_r7
        arrayMap(pos -> arrayElement(pdd_h.1, arrayFirstIndex(c -> c > floor(pos), arrayCumSum(pdd_h.2)))
                + (pos - floor(pos)) * (arrayElement(pdd_h.1, arrayFirstIndex(c -> c > ceil(pos), arrayCumSum(pdd_h.2)))
                    - arrayElement(pdd_h.1, arrayFirstIndex(c -> c > floor(pos), arrayCumSum(pdd_h.2)))),
            arrayMap(p -> (toFloat64(arraySum(pdd_h.2)) - 1) * p, [0.5, 0.95])) AS pdd_q,
        arrayMap(pos -> arrayElement(ring_h.1, arrayFirstIndex(c -> c > floor(pos), arrayCumSum(ring_h.2)))
                + (pos - floor(pos)) * (arrayElement(ring_h.1, arrayFirstIndex(c -> c > ceil(pos), arrayCumSum(ring_h.2)))
                    - arrayElement(ring_h.1, arrayFirstIndex(c -> c > floor(pos), arrayCumSum(ring_h.2)))),
            arrayMap(p -> (toFloat64(arraySum(ring_h.2)) - 1) * p, [0.5, 0.95])) AS ring_q

-- @block view_hist_quantiles
        arrayReduce('quantilesExactWeightedInterpolated(0.5, 0.95)', pdd_h.1, pdd_h.2) AS pdd_q,
        arrayReduce('quantilesExactWeightedInterpolated(0.5, 0.95)', ring_h.1, ring_h.2) AS ring_q

-- @block view_final_counts
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

-- @block view_final_states
        finalizeAggregation(pdd_quantiles) AS pdd_q, finalizeAggregation(ring_quantiles) AS ring_q

-- @block view_final_quantiles_r7
        arrayMap(pos -> arrayElement(pdd_hist.1, arrayFirstIndex(c -> c > floor(pos), arrayCumSum(pdd_hist.2)))
                + (pos - floor(pos)) * (arrayElement(pdd_hist.1, arrayFirstIndex(c -> c > ceil(pos), arrayCumSum(pdd_hist.2)))
                    - arrayElement(pdd_hist.1, arrayFirstIndex(c -> c > floor(pos), arrayCumSum(pdd_hist.2)))),
            arrayMap(p -> (toFloat64(arraySum(pdd_hist.2)) - 1) * p, [0.5, 0.95])) AS pdd_q,
        arrayMap(pos -> arrayElement(ring_hist.1, arrayFirstIndex(c -> c > floor(pos), arrayCumSum(ring_hist.2)))
                + (pos - floor(pos)) * (arrayElement(ring_hist.1, arrayFirstIndex(c -> c > ceil(pos), arrayCumSum(ring_hist.2)))
                    - arrayElement(ring_hist.1, arrayFirstIndex(c -> c > floor(pos), arrayCumSum(ring_hist.2)))),
            arrayMap(p -> (toFloat64(arraySum(ring_hist.2)) - 1) * p, [0.5, 0.95])) AS ring_q

-- @block view_final_quantiles
        arrayReduce('quantilesExactWeightedInterpolated(0.5, 0.95)', pdd_hist.1, pdd_hist.2) AS pdd_q,
        arrayReduce('quantilesExactWeightedInterpolated(0.5, 0.95)', ring_hist.1, ring_hist.2) AS ring_q
