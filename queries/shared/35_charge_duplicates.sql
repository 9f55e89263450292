-- The duplicate charges: a charge is one when an earlier charge (in ledger order,
-- ts then entry_id) has its request (user, currency, request_id) or its
-- idempotency_key. `duplicate_of` is that earlier charge: the first of its
-- request, or else the first with its key.
--
-- Most requests are charged once, so only the charges whose request or key
-- occurs more than once are ranked: two grouping passes over the ledger instead
-- of two sorts of it.
WITH charges AS (
    SELECT entry_id, ts, user_id, currency, request_id, idempotency_key
    FROM ledger
    WHERE kind = 'charge'
),

-- counted straight from the ledger: DuckDB would materialise a CTE read three times
repeated_requests AS (
    SELECT user_id, currency, request_id
    FROM ledger
    WHERE kind = 'charge' AND request_id IS NOT NULL
    GROUP BY user_id, currency, request_id
    HAVING count(*) > 1
),

repeated_keys AS (
    SELECT user_id, currency, idempotency_key
    FROM ledger
    WHERE kind = 'charge' AND idempotency_key IS NOT NULL
    GROUP BY user_id, currency, idempotency_key
    HAVING count(*) > 1
),

repeats AS (
    SELECT
        charges.entry_id,
        charges.ts,
        charges.user_id,
        charges.currency,
        charges.request_id,
        charges.idempotency_key,
        repeated_requests.request_id IS NOT NULL AS request_repeated,
        repeated_keys.idempotency_key IS NOT NULL AS key_repeated
    FROM charges
    LEFT JOIN repeated_requests
        ON charges.user_id = repeated_requests.user_id
        AND charges.currency = repeated_requests.currency
        AND charges.request_id = repeated_requests.request_id
    LEFT JOIN repeated_keys
        ON charges.user_id = repeated_keys.user_id
        AND charges.currency = repeated_keys.currency
        AND charges.idempotency_key = repeated_keys.idempotency_key
    WHERE repeated_requests.request_id IS NOT NULL OR repeated_keys.idempotency_key IS NOT NULL
),

ranked AS (
    SELECT
        entry_id,
        request_repeated,
        key_repeated,
        row_number() OVER by_request AS rn_request,
        first_value(entry_id) OVER by_request_all AS first_of_request,
        row_number() OVER by_key AS rn_key,
        first_value(entry_id) OVER by_key_all AS first_of_key
    FROM repeats
    WINDOW
        by_request AS (
            PARTITION BY user_id, currency, request_repeated, request_id
            ORDER BY ts, entry_id
        ),
        by_request_all AS (
            PARTITION BY user_id, currency, request_repeated, request_id
            ORDER BY ts, entry_id
            ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING
        ),
        by_key AS (
            PARTITION BY user_id, currency, key_repeated, idempotency_key
            ORDER BY ts, entry_id
        ),
        by_key_all AS (
            PARTITION BY user_id, currency, key_repeated, idempotency_key
            ORDER BY ts, entry_id
            ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING
        )
)

SELECT
    entry_id,
    CASE
        WHEN request_repeated AND rn_request > 1 THEN first_of_request
        ELSE first_of_key
    END AS duplicate_of
FROM ranked
WHERE (request_repeated AND rn_request > 1) OR (key_repeated AND rn_key > 1)
