-- The duplicate charges: a charge is one when an earlier charge (in ledger order,
-- ts then entry_id) has its request (user, currency, request_id) or its
-- idempotency_key. `duplicate_of` is that earlier charge: the first of its
-- request, or else the first with its key.
--
-- Most requests are charged once, so only the charges whose request or key
-- occurs more than once are ranked: two grouping passes over the ledger instead
-- of two sorts of it. The passes group by the request_id (or the key) alone, one
-- string, not three (25M near-unique groups at 50M rows): that may also mark a
-- charge whose request_id another user or currency repeats, but ranked in its
-- own partition (user, currency, request_id) it comes first there and is no
-- duplicate, so the rows are exactly those of grouping the whole key.
WITH repeated_requests AS (
    SELECT request_id
    FROM ledger
    WHERE kind = 'charge' AND request_id IS NOT NULL
    GROUP BY request_id
    HAVING count(*) > 1
),

repeated_keys AS (
    SELECT idempotency_key
    FROM ledger
    WHERE kind = 'charge' AND idempotency_key IS NOT NULL
    GROUP BY idempotency_key
    HAVING count(*) > 1
),

marked AS (
    SELECT
        ledger.entry_id,
        ledger.ts,
        ledger.user_id,
        ledger.currency,
        ledger.request_id,
        ledger.idempotency_key,
        coalesce(
            ledger.request_id IN (SELECT repeated_requests.request_id FROM repeated_requests),
            FALSE
        ) AS request_repeated,
        coalesce(
            ledger.idempotency_key IN (SELECT repeated_keys.idempotency_key FROM repeated_keys),
            FALSE
        ) AS key_repeated
    FROM ledger
    WHERE ledger.kind = 'charge'
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
    FROM marked
    -- only the repeated are ranked (the windows see the rows this leaves)
    WHERE request_repeated OR key_repeated
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
