-- title: Consumption anomalies
-- description: A row is a user-day whose charged amount is at least 10x the median
--   of the user's previous 7 days that had charges (at least 3 of them).
-- severity: info
-- param: factor DECIMAL 10 how many times the median makes a day anomalous
-- param: min_days INTEGER 3 days with charges needed in the previous 7
WITH daily AS (
    SELECT user_id, currency, date_trunc('day', ts) AS day,
           sum(CAST(-amount AS DECIMAL(38,6))) AS charged
    FROM ledger
    WHERE kind = 'charge'
    GROUP BY user_id, currency, date_trunc('day', ts)
),
history AS (
    SELECT d.user_id, d.currency, d.day, d.charged,
           median(p.charged) AS median_charged, count(p.day) AS days_with_charges
    FROM daily AS d
    JOIN daily AS p
        ON p.user_id = d.user_id AND p.currency = d.currency
        AND p.day >= d.day - INTERVAL '7' DAY AND p.day < d.day
    GROUP BY d.user_id, d.currency, d.day, d.charged
)
SELECT 'consumption_anomalies' AS detector, user_id, currency, day AS ts,
       CAST(NULL AS VARCHAR) AS request_id, CAST(NULL AS VARCHAR) AS entry_id,
       charged AS amount,
       'charged ' || CAST(charged AS VARCHAR) || ', median of the previous 7 days '
           || CAST(median_charged AS VARCHAR) AS detail,
       median_charged, days_with_charges
FROM history
WHERE days_with_charges >= $min_days
  AND median_charged > 0
  AND charged >= CAST($factor AS DECIMAL(38,6)) * median_charged
  AND ($since IS NULL OR day >= $since)
  AND ($until IS NULL OR day < $until)
ORDER BY user_id, currency, ts
