-- The span of the data: where restrictions without an end stop, and the
-- window every detection can speak about.
WITH requests AS (
    SELECT ts FROM requests
),

ledger AS (
    SELECT ts FROM ledger
),

abuse_events AS (
    SELECT ts FROM abuse_events
),

every_ts AS (
    SELECT ts FROM requests
    UNION ALL
    SELECT ts FROM ledger
    UNION ALL
    SELECT ts FROM abuse_events
)

SELECT
    min(ts) AS start_ts,
    max(ts) AS end_ts
FROM every_ts
