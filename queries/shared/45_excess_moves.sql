-- The ledger rows that move a user's outstanding excess, with the outstanding
-- excess after each (DESIGN.md section 3, counterfactual balance): a charge's
-- excess (duplicate, failed request, false-positive penalty, overbilled) adds
-- to it, a refund of such a request takes back what is left of that request's
-- excess, and a reset clears it. Few rows next to the ledger, so the balance
-- timeline looks them up instead of summing over every row.
WITH gross_by_request AS (
    SELECT user_id, currency, request_id, sum(excess_gross) AS gross
    FROM charge_attribution
    WHERE excess_gross > 0
    GROUP BY user_id, currency, request_id
),
refund_rows AS (
    SELECT l.entry_id, l.user_id, l.currency, l.ts, CAST(l.amount AS DECIMAL(38,6)) AS amount,
           g.gross,
           coalesce(sum(CAST(l.amount AS DECIMAL(38,6))) OVER (
               PARTITION BY l.user_id, l.currency, l.request_id ORDER BY l.ts, l.entry_id
               ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING),
               CAST(0 AS DECIMAL(38,6))) AS refunded_before
    FROM ledger AS l
    JOIN gross_by_request AS g
        ON g.user_id = l.user_id AND g.currency = l.currency AND g.request_id = l.request_id
    WHERE l.kind = 'refund'
),
moves AS (
    SELECT entry_id, user_id, currency, ts, excess_gross AS delta, 0 AS is_reset
    FROM charge_attribution
    WHERE excess_gross > 0
    UNION ALL
    SELECT entry_id, user_id, currency, ts,
           -least(amount, greatest(gross - refunded_before, CAST(0 AS DECIMAL(38,6)))), 0
    FROM refund_rows
    UNION ALL
    SELECT entry_id, user_id, currency, ts, CAST(0 AS DECIMAL(38,6)), 1
    FROM ledger
    WHERE kind = 'reset'
),
excess_segments AS (
    SELECT m.*,
           sum(is_reset) OVER (
               PARTITION BY user_id, currency ORDER BY ts, entry_id
               ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS resets
    FROM moves AS m
)
SELECT entry_id, delta,
       sum(delta) OVER (
           PARTITION BY user_id, currency, resets ORDER BY ts, entry_id
           ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS outstanding
FROM excess_segments
