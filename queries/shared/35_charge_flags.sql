-- Every charge of the ledger with what tells a duplicate: its rank among the
-- charges of its request (by ts, entry_id) and among those with its
-- idempotency key, and the first entry of its request. A charge is a duplicate
-- when an earlier charge has its request_id or its idempotency_key. Kept apart
-- from the attribution so each step stays small enough to run in bounded memory.
SELECT *, (rn_request > 1 OR rn_key > 1) AS is_duplicate
FROM (
    SELECT entry_id, ts, user_id, currency, request_id, idempotency_key, source_id, line,
           CAST(-amount AS DECIMAL(38,6)) AS charged,
           row_number() OVER (
               PARTITION BY user_id, currency, request_id ORDER BY ts, entry_id) AS rn_request,
           row_number() OVER (
               PARTITION BY user_id, currency, coalesce(idempotency_key, entry_id)
               ORDER BY ts, entry_id) AS rn_key,
           first_value(entry_id) OVER (
               PARTITION BY user_id, currency, request_id ORDER BY ts, entry_id
               ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) AS first_entry_id
    FROM ledger
    WHERE kind = 'charge'
) AS charges
