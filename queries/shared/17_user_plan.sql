-- Each user's plan: that of the user's latest request naming one (by ts, then
-- request_id). Ledger rows carry no plan; impact reports a user under this one,
-- and timeline --plan selects a user's rows by it.
WITH plans_by_recency AS (
    SELECT
        user_id,
        plan,
        row_number() OVER (PARTITION BY user_id ORDER BY ts DESC, request_id DESC) AS recency
    FROM requests
    WHERE plan IS NOT NULL
)

SELECT
    user_id,
    plan
FROM plans_by_recency
WHERE recency = 1
