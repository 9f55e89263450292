-- Each user's plan: that of the user's latest request naming one (by ts, then
-- request_id). Ledger rows carry no plan; impact reports a user under this one,
-- and timeline --plan selects a user's rows by it.
--
-- Two grouping passes and look-ups instead of a sort of every request (request_id
-- is unique among the canonical requests, and ts, request_id and user_id are never
-- NULL); each reads the requests straight: DuckDB would materialise a CTE read
-- three times.
WITH latest_ts AS (
    SELECT
        user_id,
        max(ts) AS ts
    FROM requests
    WHERE plan IS NOT NULL
    GROUP BY user_id
),

-- the greatest request_id among the requests at the latest ts breaks a tie
latest_request AS (
    SELECT
        requests.user_id,
        max(requests.request_id) AS request_id
    FROM requests
    INNER JOIN latest_ts
        ON requests.user_id = latest_ts.user_id AND requests.ts = latest_ts.ts
    WHERE requests.plan IS NOT NULL
    GROUP BY requests.user_id
)

SELECT
    latest_request.user_id,
    requests.plan
FROM latest_request
INNER JOIN requests ON latest_request.request_id = requests.request_id
