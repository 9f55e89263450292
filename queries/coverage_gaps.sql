-- title: Coverage gaps
-- description: A row is a clock hour, inside the span the request log and the ledger
--   cover together, where one of them has rows and the other has none: where the
--   logs, not the users, are missing.
-- severity: low
WITH request_hours AS (
    SELECT date_trunc('hour', ts) AS hour, count(*) AS n FROM requests
    GROUP BY date_trunc('hour', ts)
),
ledger_hours AS (
    SELECT date_trunc('hour', ts) AS hour, count(*) AS n FROM ledger
    GROUP BY date_trunc('hour', ts)
),
span AS (
    SELECT greatest(r.first_hour, l.first_hour) AS from_hour,
           least(r.last_hour, l.last_hour) AS to_hour
    FROM (SELECT min(hour) AS first_hour, max(hour) AS last_hour FROM request_hours) AS r
    CROSS JOIN (SELECT min(hour) AS first_hour, max(hour) AS last_hour FROM ledger_hours) AS l
),
hours AS (
    SELECT coalesce(r.hour, l.hour) AS hour, r.n AS request_rows, l.n AS ledger_rows
    FROM request_hours AS r
    FULL OUTER JOIN ledger_hours AS l ON l.hour = r.hour
)
SELECT 'coverage_gaps' AS detector, CAST(NULL AS VARCHAR) AS user_id,
       CAST(NULL AS VARCHAR) AS currency, h.hour AS ts, CAST(NULL AS VARCHAR) AS request_id,
       CAST(NULL AS VARCHAR) AS entry_id, CAST(NULL AS DECIMAL(38,6)) AS amount,
       CASE WHEN h.request_rows IS NULL
            THEN 'requests: none; ledger: ' || CAST(h.ledger_rows AS VARCHAR) || ' rows'
            ELSE 'ledger: none; requests: ' || CAST(h.request_rows AS VARCHAR) || ' rows'
       END AS detail,
       coalesce(h.request_rows, 0) AS request_rows, coalesce(h.ledger_rows, 0) AS ledger_rows
FROM hours AS h
CROSS JOIN span AS s
WHERE h.hour >= s.from_hour AND h.hour <= s.to_hour
  AND (h.request_rows IS NULL OR h.ledger_rows IS NULL)
  AND ($since IS NULL OR h.hour >= $since)
  AND ($until IS NULL OR h.hour < $until)
ORDER BY ts
