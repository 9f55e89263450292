-- title: Coverage gaps
-- description: A row is a clock hour, inside the span the request log and the ledger
--   cover together, where one of them has rows and the other has none: where the
--   logs, not the users, are missing.
-- severity: low
WITH requests AS (
    SELECT ts FROM requests
),

ledger AS (
    SELECT ts FROM ledger
),

request_hours AS (
    SELECT
        date_trunc('hour', ts) AS hour,
        count(*) AS row_count
    FROM requests
    GROUP BY date_trunc('hour', ts)
),

ledger_hours AS (
    SELECT
        date_trunc('hour', ts) AS hour,
        count(*) AS row_count
    FROM ledger
    GROUP BY date_trunc('hour', ts)
),

request_span AS (
    SELECT
        min(hour) AS first_hour,
        max(hour) AS last_hour
    FROM request_hours
),

ledger_span AS (
    SELECT
        min(hour) AS first_hour,
        max(hour) AS last_hour
    FROM ledger_hours
),

-- the hours from the later first hour of the two to the earlier last hour
span AS (
    SELECT
        greatest(request_span.first_hour, ledger_span.first_hour) AS from_hour,
        least(request_span.last_hour, ledger_span.last_hour) AS to_hour
    FROM request_span
    CROSS JOIN ledger_span
),

hours AS (
    SELECT
        coalesce(request_hours.hour, ledger_hours.hour) AS hour,
        request_hours.row_count AS request_rows,
        ledger_hours.row_count AS ledger_rows
    FROM request_hours
    FULL OUTER JOIN ledger_hours ON request_hours.hour = ledger_hours.hour
)

SELECT
    'coverage_gaps' AS detector,
    CAST(NULL AS VARCHAR) AS user_id,
    CAST(NULL AS VARCHAR) AS currency,
    hours.hour AS ts,
    CAST(NULL AS VARCHAR) AS request_id,
    CAST(NULL AS VARCHAR) AS entry_id,
    CAST(NULL AS DECIMAL(38, 6)) AS amount,
    CASE
        WHEN hours.request_rows IS NULL
            THEN 'requests: none; ledger: ' || CAST(hours.ledger_rows AS VARCHAR) || ' rows'
        ELSE 'ledger: none; requests: ' || CAST(hours.request_rows AS VARCHAR) || ' rows'
    END AS detail,
    coalesce(hours.request_rows, 0) AS request_rows,
    coalesce(hours.ledger_rows, 0) AS ledger_rows
FROM hours
CROSS JOIN span
WHERE
    hours.hour >= span.from_hour
    AND hours.hour <= span.to_hour
    AND (hours.request_rows IS NULL OR hours.ledger_rows IS NULL)
    AND ($since IS NULL OR hours.hour >= $since)
    AND ($until IS NULL OR hours.hour < $until)
ORDER BY ts
