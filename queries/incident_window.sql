-- title: Incident window
-- description: The estimated window of each fault: first and last timestamp of the
--   erroneous rows each detector found (billing mismatches and abuse false positives
--   split by kind), with the number of rows in each clock hour that has any.
-- severity: info
-- findings: no
-- uses: findings
WITH erroneous AS (
    SELECT CASE WHEN detector IN ('billing_mismatch', 'abuse_false_positives')
                THEN detector || ':' || detail ELSE detector END AS fault,
           ts
    FROM findings
    WHERE detector NOT IN ('coverage_gaps', 'consumption_anomalies')
      AND ts IS NOT NULL
      AND ($since IS NULL OR ts >= $since)
      AND ($until IS NULL OR ts < $until)
),
windows AS (
    SELECT fault, min(ts) AS window_start, max(ts) AS window_end, count(*) AS rows_total
    FROM erroneous
    GROUP BY fault
),
hourly AS (
    SELECT fault, date_trunc('hour', ts) AS hour, count(*) AS rows_in_hour
    FROM erroneous
    GROUP BY fault, date_trunc('hour', ts)
)
SELECT w.fault, w.window_start, w.window_end, w.rows_total, h.hour, h.rows_in_hour
FROM windows AS w
JOIN hourly AS h ON h.fault = w.fault
ORDER BY w.fault, h.hour
