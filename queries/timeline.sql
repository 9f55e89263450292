-- title: Timeline
-- description: The war room's standing view: per clock hour (or UTC day) and currency,
--   the requests, the 429s by error code, the charges and what they charged, the
--   erroneous charges and their excess (the excess still owed, as the findings count
--   it: duplicate, failed request, false-positive penalty, overbilled), and the
--   wrongful 429s; with compare_days, the same counts that many days earlier beside
--   each (the *_prev columns). A request and its 429 count in the currency it is
--   billed in (that of its charge, else its user's), a charge in its own. Every period
--   from the first to the last with rows (or from --since to --until) is listed, with
--   zeros where nothing happened; --since/--until select the periods by their start.
-- severity: info
-- findings: no
-- param: every VARCHAR hour  the period: hour or day (any other value lists nothing)
-- param: compare_days INTEGER NULL  put the counts of the period this many days earlier beside each
-- param: user_id VARCHAR NULL  only this user's rows
-- param: plan VARCHAR NULL  only the rows of users on this plan (their latest request's)
-- param: model VARCHAR NULL  only requests of this model, and the charges of such requests
WITH requests AS (
    SELECT request_id, user_id, ts, model, status, error_code FROM requests
),

charge_attribution AS (
    SELECT entry_id, ts, user_id, currency, request_id, charged, excess
    FROM charge_attribution
),

expected_charges AS (
    SELECT request_id, currency FROM expected_charges
),

served_rejections AS (
    SELECT request_id, wrongful FROM served_rejections
),

user_plan AS (
    SELECT user_id, plan FROM user_plan
),

-- the currency a request is billed in (one, should two charges name it in two)
request_currencies AS (
    SELECT
        request_id,
        min(currency) AS currency
    FROM expected_charges
    GROUP BY request_id
),

request_models AS (
    SELECT
        request_id,
        min(model) AS request_model
    FROM requests
    GROUP BY request_id
),

wrongful_requests AS (
    SELECT DISTINCT request_id FROM served_rejections
    WHERE wrongful
),

request_events AS (
    SELECT
        CASE
            WHEN $every = 'day' THEN date_trunc('day', requests.ts)
            WHEN $every = 'hour' THEN date_trunc('hour', requests.ts)
        END AS period_start,
        request_currencies.currency,
        1 AS requests,
        CASE WHEN requests.status = 429 THEN 1 ELSE 0 END AS http_429,
        CASE
            WHEN requests.status = 429 AND requests.error_code = 'insufficient_quota' THEN 1
            ELSE 0
        END AS http_429_insufficient_quota,
        CASE
            WHEN requests.status = 429 AND requests.error_code = 'usage_limit_reached' THEN 1
            ELSE 0
        END AS http_429_usage_limit_reached,
        CASE
            WHEN requests.status = 429 AND requests.error_code = 'rate_limit_exceeded' THEN 1
            ELSE 0
        END AS http_429_rate_limit_exceeded,
        CASE
            WHEN requests.status = 429 AND requests.error_code = 'abuse_blocked' THEN 1
            ELSE 0
        END AS http_429_abuse_blocked,
        CASE
            WHEN
                requests.status = 429
                AND (
                    requests.error_code IS NULL
                    OR requests.error_code NOT IN (
                        'insufficient_quota', 'usage_limit_reached',
                        'rate_limit_exceeded', 'abuse_blocked'
                    )
                )
                THEN 1
            ELSE 0
        END AS http_429_other,
        CASE WHEN wrongful_requests.request_id IS NULL THEN 0 ELSE 1 END AS wrongful_429s,
        0 AS charges,
        CAST(0 AS DECIMAL(38, 6)) AS charged,
        0 AS erroneous_charges,
        CAST(0 AS DECIMAL(38, 6)) AS erroneous_excess
    FROM requests
    LEFT JOIN request_currencies ON requests.request_id = request_currencies.request_id
    LEFT JOIN wrongful_requests ON requests.request_id = wrongful_requests.request_id
    LEFT JOIN user_plan ON requests.user_id = user_plan.user_id
    WHERE
        ($user_id IS NULL OR requests.user_id = $user_id)
        AND ($plan IS NULL OR lower(user_plan.plan) = lower($plan))
        AND ($model IS NULL OR requests.model = $model)
),

charge_events AS (
    SELECT
        CASE
            WHEN $every = 'day' THEN date_trunc('day', charge_attribution.ts)
            WHEN $every = 'hour' THEN date_trunc('hour', charge_attribution.ts)
        END AS period_start,
        charge_attribution.currency,
        0 AS requests,
        0 AS http_429,
        0 AS http_429_insufficient_quota,
        0 AS http_429_usage_limit_reached,
        0 AS http_429_rate_limit_exceeded,
        0 AS http_429_abuse_blocked,
        0 AS http_429_other,
        0 AS wrongful_429s,
        1 AS charges,
        charge_attribution.charged,
        CASE WHEN charge_attribution.excess > 0 THEN 1 ELSE 0 END AS erroneous_charges,
        charge_attribution.excess AS erroneous_excess
    FROM charge_attribution
    LEFT JOIN request_models ON charge_attribution.request_id = request_models.request_id
    LEFT JOIN user_plan ON charge_attribution.user_id = user_plan.user_id
    WHERE
        ($user_id IS NULL OR charge_attribution.user_id = $user_id)
        AND ($plan IS NULL OR lower(user_plan.plan) = lower($plan))
        AND ($model IS NULL OR request_models.request_model = $model)
),

events AS (
    SELECT * FROM request_events
    UNION ALL
    SELECT * FROM charge_events
),

counts AS (
    SELECT
        period_start,
        currency,
        CAST(sum(requests) AS BIGINT) AS requests,
        CAST(sum(http_429) AS BIGINT) AS http_429,
        CAST(sum(http_429_insufficient_quota) AS BIGINT) AS http_429_insufficient_quota,
        CAST(sum(http_429_usage_limit_reached) AS BIGINT) AS http_429_usage_limit_reached,
        CAST(sum(http_429_rate_limit_exceeded) AS BIGINT) AS http_429_rate_limit_exceeded,
        CAST(sum(http_429_abuse_blocked) AS BIGINT) AS http_429_abuse_blocked,
        CAST(sum(http_429_other) AS BIGINT) AS http_429_other,
        CAST(sum(charges) AS BIGINT) AS charges,
        CAST(sum(charged) AS DECIMAL(38, 6)) AS charged,
        CAST(sum(erroneous_charges) AS BIGINT) AS erroneous_charges,
        CAST(sum(erroneous_excess) AS DECIMAL(38, 6)) AS erroneous_excess,
        CAST(sum(wrongful_429s) AS BIGINT) AS wrongful_429s
    FROM events
    WHERE period_start IS NOT NULL
    GROUP BY period_start, currency
),

currencies AS (
    SELECT DISTINCT currency FROM counts
),

-- the periods to list: every one from --since (else the first with rows) to --until
-- (else the last with rows), when they are at most 100,000 (11 years of hours); past
-- that (a stray row of 1970), only those with rows, or whose compared period has rows
bounds AS (
    SELECT
        coalesce(
            CASE
                WHEN $every = 'day' THEN date_trunc('day', CAST($since AS TIMESTAMP))
                ELSE date_trunc('hour', CAST($since AS TIMESTAMP))
            END,
            min(period_start)
        ) AS first_period,
        coalesce(
            $until,
            max(period_start)
            + CASE WHEN $every = 'day' THEN INTERVAL '1' DAY ELSE INTERVAL '1' HOUR END
        ) AS periods_end
    FROM counts
),

digits AS (
    SELECT 0 AS digit
    UNION ALL
    SELECT 1
    UNION ALL
    SELECT 2
    UNION ALL
    SELECT 3
    UNION ALL
    SELECT 4
    UNION ALL
    SELECT 5
    UNION ALL
    SELECT 6
    UNION ALL
    SELECT 7
    UNION ALL
    SELECT 8
    UNION ALL
    SELECT 9
),

steps AS (
    SELECT
        ones.digit + 10 * tens.digit + 100 * hundreds.digit + 1000 * thousands.digit
        + 10000 * ten_thousands.digit AS step
    FROM digits AS ones
    CROSS JOIN digits AS tens
    CROSS JOIN digits AS hundreds
    CROSS JOIN digits AS thousands
    CROSS JOIN digits AS ten_thousands
),

-- compared as intervals, so a period past the last representable time is never made
offsets AS (
    SELECT
        CASE
            WHEN $every = 'day' THEN steps.step * INTERVAL '1' DAY
            ELSE steps.step * INTERVAL '1' HOUR
        END AS step_offset
    FROM steps
),

periods AS (
    SELECT bounds.first_period + offsets.step_offset AS period_start
    FROM bounds
    CROSS JOIN offsets
    WHERE
        offsets.step_offset < bounds.periods_end - bounds.first_period
        AND bounds.periods_end - bounds.first_period <= CASE
            WHEN $every = 'day' THEN 100000 * INTERVAL '1' DAY
            ELSE 100000 * INTERVAL '1' HOUR
        END
    UNION
    SELECT counts.period_start
    FROM counts
    UNION
    SELECT counts.period_start + CAST($compare_days AS INTEGER) * INTERVAL '1' DAY AS period_start
    FROM counts
    CROSS JOIN bounds
    WHERE
        $compare_days IS NOT NULL
        AND counts.period_start + CAST($compare_days AS INTEGER) * INTERVAL '1' DAY
        < bounds.periods_end
),

grid AS (
    SELECT
        periods.period_start,
        currencies.currency,
        periods.period_start
        - CAST($compare_days AS INTEGER) * INTERVAL '1' DAY AS prev_period_start
    FROM periods
    CROSS JOIN currencies
    WHERE
        ($since IS NULL OR periods.period_start >= $since)
        AND ($until IS NULL OR periods.period_start < $until)
)

SELECT
    grid.period_start,
    grid.currency,
    grid.prev_period_start,
    coalesce(cur.requests, 0) AS requests,
    CASE WHEN grid.prev_period_start IS NOT NULL THEN coalesce(prev.requests, 0) END
        AS requests_prev,
    coalesce(cur.http_429, 0) AS http_429,
    CASE WHEN grid.prev_period_start IS NOT NULL THEN coalesce(prev.http_429, 0) END
        AS http_429_prev,
    coalesce(cur.http_429_insufficient_quota, 0) AS http_429_insufficient_quota,
    CASE
        WHEN grid.prev_period_start IS NOT NULL
            THEN coalesce(prev.http_429_insufficient_quota, 0)
    END AS http_429_insufficient_quota_prev,
    coalesce(cur.http_429_usage_limit_reached, 0) AS http_429_usage_limit_reached,
    CASE
        WHEN grid.prev_period_start IS NOT NULL
            THEN coalesce(prev.http_429_usage_limit_reached, 0)
    END AS http_429_usage_limit_reached_prev,
    coalesce(cur.http_429_rate_limit_exceeded, 0) AS http_429_rate_limit_exceeded,
    CASE
        WHEN grid.prev_period_start IS NOT NULL
            THEN coalesce(prev.http_429_rate_limit_exceeded, 0)
    END AS http_429_rate_limit_exceeded_prev,
    coalesce(cur.http_429_abuse_blocked, 0) AS http_429_abuse_blocked,
    CASE
        WHEN grid.prev_period_start IS NOT NULL
            THEN coalesce(prev.http_429_abuse_blocked, 0)
    END AS http_429_abuse_blocked_prev,
    coalesce(cur.http_429_other, 0) AS http_429_other,
    CASE WHEN grid.prev_period_start IS NOT NULL THEN coalesce(prev.http_429_other, 0) END
        AS http_429_other_prev,
    coalesce(cur.wrongful_429s, 0) AS wrongful_429s,
    CASE WHEN grid.prev_period_start IS NOT NULL THEN coalesce(prev.wrongful_429s, 0) END
        AS wrongful_429s_prev,
    coalesce(cur.charges, 0) AS charges,
    CASE WHEN grid.prev_period_start IS NOT NULL THEN coalesce(prev.charges, 0) END
        AS charges_prev,
    coalesce(cur.charged, CAST(0 AS DECIMAL(38, 6))) AS charged,
    CASE
        WHEN grid.prev_period_start IS NOT NULL
            THEN coalesce(prev.charged, CAST(0 AS DECIMAL(38, 6)))
    END AS charged_prev,
    coalesce(cur.erroneous_charges, 0) AS erroneous_charges,
    CASE WHEN grid.prev_period_start IS NOT NULL THEN coalesce(prev.erroneous_charges, 0) END
        AS erroneous_charges_prev,
    coalesce(cur.erroneous_excess, CAST(0 AS DECIMAL(38, 6))) AS erroneous_excess,
    CASE
        WHEN grid.prev_period_start IS NOT NULL
            THEN coalesce(prev.erroneous_excess, CAST(0 AS DECIMAL(38, 6)))
    END AS erroneous_excess_prev
FROM grid
LEFT JOIN counts AS cur
    ON grid.period_start = cur.period_start AND grid.currency = cur.currency
LEFT JOIN counts AS prev
    ON grid.prev_period_start = prev.period_start AND grid.currency = prev.currency
ORDER BY grid.period_start, grid.currency
