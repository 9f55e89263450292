-- The ledger rows that move a user's outstanding excess, with the outstanding
-- excess after each (DESIGN.md section 3, counterfactual balance): a charge's
-- excess (duplicate, failed request, false-positive penalty, overbilled) adds
-- to it, a refund of such a request takes back what is left of that request's
-- excess, and a reset clears it. Few rows next to the ledger, so the balance
-- timeline looks them up instead of summing over every row.
WITH refunds AS (
    SELECT entry_id, ts, user_id, CAST(amount AS DECIMAL(38, 6)) AS amount, currency, request_id
    FROM ledger
    WHERE kind = 'refund'
),

resets AS (
    SELECT entry_id, ts, user_id, currency
    FROM ledger
    WHERE kind = 'reset'
),

-- the erroneous charges of the selected faults: every one, unless impact names a fault
-- window (DESIGN.md section 7.4: only the charges with ts in it are undone)
charge_attribution AS (
    SELECT entry_id, ts, user_id, currency, request_id, excess_gross
    FROM charge_attribution
    WHERE
        excess_gross > 0
        AND ($fault_start IS NULL OR ts >= $fault_start)
        AND ($fault_end IS NULL OR ts < $fault_end)
),

gross_by_request AS (
    SELECT
        user_id,
        currency,
        request_id,
        sum(excess_gross) AS gross
    FROM charge_attribution
    GROUP BY user_id, currency, request_id
),

-- the refunds of requests with excess, with what earlier refunds of the request gave back
excess_refunds AS (
    SELECT
        refunds.entry_id,
        refunds.user_id,
        refunds.currency,
        refunds.ts,
        refunds.amount,
        gross_by_request.gross,
        coalesce(
            sum(refunds.amount) OVER (
                PARTITION BY refunds.user_id, refunds.currency, refunds.request_id
                ORDER BY refunds.ts, refunds.entry_id
                ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
            ),
            CAST(0 AS DECIMAL(38, 6))
        ) AS refunded_before
    FROM refunds
    INNER JOIN gross_by_request
        ON refunds.user_id = gross_by_request.user_id
        AND refunds.currency = gross_by_request.currency
        AND refunds.request_id = gross_by_request.request_id
),

moves AS (
    SELECT
        entry_id,
        user_id,
        currency,
        ts,
        excess_gross AS delta,
        0 AS is_reset
    FROM charge_attribution
    UNION ALL
    -- a refund takes back no more than what is left of its request's excess
    SELECT
        entry_id,
        user_id,
        currency,
        ts,
        -least(amount, greatest(gross - refunded_before, CAST(0 AS DECIMAL(38, 6)))) AS delta,
        0 AS is_reset
    FROM excess_refunds
    UNION ALL
    SELECT
        entry_id,
        user_id,
        currency,
        ts,
        CAST(0 AS DECIMAL(38, 6)) AS delta,
        1 AS is_reset
    FROM resets
),

-- the resets before each move (itself included) number the segments
excess_segments AS (
    SELECT
        entry_id,
        user_id,
        currency,
        ts,
        delta,
        sum(is_reset) OVER (
            PARTITION BY user_id, currency
            ORDER BY ts, entry_id
            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
        ) AS resets
    FROM moves
)

SELECT
    entry_id,
    delta,
    sum(delta) OVER (
        PARTITION BY user_id, currency, resets
        ORDER BY ts, entry_id
        ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
    ) AS outstanding
FROM excess_segments
