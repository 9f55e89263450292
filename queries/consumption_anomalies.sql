-- title: Consumption anomalies
-- description: A row is a user-day whose charged amount is at least 10x the lower median
--   of the user's previous 7 days that had charges (at least 3 of them).
-- severity: info
-- param: factor DECIMAL 10 how many times the median makes a day anomalous
-- param: min_days INTEGER 3 days with charges needed in the previous 7
WITH charges AS (
    SELECT user_id, currency, ts, CAST(-amount AS DECIMAL(38, 6)) AS charged
    FROM ledger
    WHERE kind = 'charge'
),

daily AS (
    SELECT
        user_id,
        currency,
        date_trunc('day', ts) AS day,
        sum(charged) AS charged
    FROM charges
    GROUP BY user_id, currency, date_trunc('day', ts)
),

-- each day beside the days with charges in the 7 before it, ranked by amount
earlier_days AS (
    SELECT
        daily.user_id,
        daily.currency,
        daily.day,
        daily.charged,
        earlier_day.charged AS earlier_charged,
        row_number() OVER (
            PARTITION BY daily.user_id, daily.currency, daily.day
            ORDER BY earlier_day.charged, earlier_day.day
        ) AS value_rank,
        count(*) OVER (
            PARTITION BY daily.user_id, daily.currency, daily.day
        ) AS values_total
    FROM daily
    INNER JOIN daily AS earlier_day
        ON daily.user_id = earlier_day.user_id
        AND daily.currency = earlier_day.currency
        AND earlier_day.day >= daily.day - INTERVAL '7' DAY
        AND daily.day > earlier_day.day
),

-- the lower median (the ceil(n/2)-th smallest, DESIGN.md 7.2) of those days
history AS (
    SELECT
        user_id,
        currency,
        day,
        charged,
        earlier_charged AS median_charged,
        values_total AS days_with_charges
    FROM earlier_days
    WHERE values_total BETWEEN 2 * value_rank - 1 AND 2 * value_rank
)

SELECT
    'consumption_anomalies' AS detector,
    user_id,
    currency,
    day AS ts,
    CAST(NULL AS VARCHAR) AS request_id,
    CAST(NULL AS VARCHAR) AS entry_id,
    charged AS amount,
    'charged ' || CAST(charged AS VARCHAR) || ', median of the previous 7 days '
    || CAST(median_charged AS VARCHAR) AS detail,
    median_charged,
    days_with_charges
FROM history
WHERE
    days_with_charges >= $min_days
    AND median_charged > 0
    AND charged >= CAST($factor AS DECIMAL(38, 6)) * median_charged
    AND ($since IS NULL OR day >= $since)
    AND ($until IS NULL OR day < $until)
ORDER BY user_id, currency, ts
