-- title: Incident window
-- description: The estimated window of each fault: first and last timestamp of the
--   erroneous rows each detector found (billing mismatches and abuse false positives
--   split by kind), with the number of rows in each clock hour that has any. Coverage
--   gaps, consumption anomalies and price conflicts speak about the data, not a fault.
-- severity: info
-- findings: no
-- uses: findings
WITH findings AS (
    SELECT detector, detail, ts FROM findings
),

-- billing mismatches and abuse false positives are split by kind
erroneous AS (
    SELECT
        CASE
            WHEN detector IN ('billing_mismatch', 'abuse_false_positives')
                THEN detector || ':' || detail
            ELSE detector
        END AS fault,
        ts
    FROM findings
    WHERE
        detector NOT IN ('coverage_gaps', 'consumption_anomalies', 'price_conflicts')
        AND ts IS NOT NULL
        AND ($since IS NULL OR ts >= $since)
        AND ($until IS NULL OR ts < $until)
),

windows AS (
    SELECT
        fault,
        min(ts) AS window_start,
        max(ts) AS window_end,
        count(*) AS rows_total
    FROM erroneous
    GROUP BY fault
),

hourly AS (
    SELECT
        fault,
        date_trunc('hour', ts) AS hour,
        count(*) AS rows_in_hour
    FROM erroneous
    GROUP BY fault, date_trunc('hour', ts)
)

SELECT
    windows.fault,
    windows.window_start,
    windows.window_end,
    windows.rows_total,
    hourly.hour,
    hourly.rows_in_hour
FROM windows
INNER JOIN hourly ON windows.fault = hourly.fault
ORDER BY windows.fault, hourly.hour
