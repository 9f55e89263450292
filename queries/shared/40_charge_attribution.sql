-- Every charge in the ledger with the one cause its excess is attributed to
-- (DESIGN.md section 3, "Excess and precedence"), in this order:
--   duplicate               a later charge of a request (same request_id, or the
--                           same idempotency_key) already charged: all of it
--   orphan_charge           no such request in the logs (for review, never credited)
--   charged_failed_request  the request failed (status >= 400): all of it
--   abuse_penalty           charged while false-positive penalties stood:
--                           charged - expected
--   penalty_standing        charged while a warranted (or unreviewed) penalty
--                           stood: never overbilled, never credited
--   overbilled / underbilled  charged vs expected beyond 0.000001
--   unpriced / ok           no price to judge by / as expected
-- `excess_gross` is what the cause took from the balance when charged;
-- `excess` is what is still owed: less the refunds that name the request,
-- applied to its duplicates first, then to its first charge, in ledger order.
WITH charges AS (
    SELECT
        entry_id, ts, user_id, currency, request_id, idempotency_key, source_id, line,
        CAST(-amount AS DECIMAL(38, 6)) AS charged
    FROM ledger
    WHERE kind = 'charge'
),

refunds AS (
    SELECT user_id, currency, request_id, CAST(amount AS DECIMAL(38, 6)) AS amount
    FROM ledger
    WHERE kind = 'refund' AND request_id IS NOT NULL
),

-- only a charged request's rows can meet a charge (the others are in its user's
-- currency because no charge names the request); so few columns next to a charge's
-- that the join keeps them in its hash table, not the charges
expected_charges AS (
    SELECT request_id, currency, status, model, expected
    FROM expected_charges
    WHERE is_charged
),

charge_duplicates AS (
    SELECT entry_id, duplicate_of FROM charge_duplicates
),

penalties AS (
    SELECT user_id, ts, end_ts, classification
    FROM abuse_restrictions
    WHERE action = 'penalty'
),

-- the charges again, each reader's own and as narrow as it needs: one relation read
-- three times would be kept whole in memory (spilling past the limit) instead of
-- being scanned where it lies
refund_charges AS (
    SELECT
        entry_id, ts, user_id, currency, request_id, CAST(-amount AS DECIMAL(38, 6)) AS charged
    FROM ledger
    WHERE kind = 'charge'
),

charge_times AS (
    SELECT entry_id, ts, user_id
    FROM ledger
    WHERE kind = 'charge'
),

refunded_requests AS (
    SELECT user_id, currency, request_id, sum(amount) AS refunded
    FROM refunds
    GROUP BY user_id, currency, request_id
),

-- the charges of the requests that refunds name, in the order a refund is applied
-- (duplicates first, then the first charge): how much of the refund the excess
-- before each took. A duplicate's excess is its whole charge, and the first charge
-- comes last, so this needs no more than the duplicates.
refund_order AS (
    SELECT
        refund_charges.entry_id,
        refunded_requests.refunded,
        coalesce(
            sum(CASE
                WHEN charge_duplicates.entry_id IS NOT NULL THEN refund_charges.charged
                ELSE CAST(0 AS DECIMAL(38, 6))
            END) OVER (
                PARTITION BY
                    refund_charges.user_id, refund_charges.currency, refund_charges.request_id
                ORDER BY
                    CASE WHEN charge_duplicates.entry_id IS NOT NULL THEN 0 ELSE 1 END,
                    refund_charges.ts,
                    refund_charges.entry_id
                ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
            ),
            CAST(0 AS DECIMAL(38, 6))
        ) AS excess_before
    FROM refund_charges
    INNER JOIN refunded_requests
        ON refund_charges.user_id = refunded_requests.user_id
        AND refund_charges.currency = refunded_requests.currency
        AND refund_charges.request_id = refunded_requests.request_id
    LEFT JOIN charge_duplicates ON refund_charges.entry_id = charge_duplicates.entry_id
),

-- the penalties standing at each charge (only a first charge is judged by them)
penalised AS (
    SELECT
        charge_times.entry_id,
        count(*) AS penalties,
        sum(CASE WHEN penalties.classification = 'false_positive' THEN 1 ELSE 0 END)
            AS false_positives
    FROM charge_times
    INNER JOIN penalties
        ON charge_times.user_id = penalties.user_id
        AND charge_times.ts >= penalties.ts
        AND charge_times.ts < penalties.end_ts
    GROUP BY charge_times.entry_id
),

-- a first charge beside its request and what that should cost in the charge's
-- currency (a duplicate's request was judged with its first charge), and the
-- penalties standing
metered AS (
    SELECT
        charges.entry_id,
        charges.ts,
        charges.user_id,
        charges.currency,
        charges.request_id,
        charges.idempotency_key,
        charges.source_id,
        charges.line,
        charges.charged,
        charge_duplicates.duplicate_of,
        charge_duplicates.entry_id IS NOT NULL AS is_duplicate,
        expected_charges.request_id AS metered_request_id,
        expected_charges.status,
        expected_charges.model,
        penalised.penalties,
        penalised.false_positives,
        refund_order.refunded,
        refund_order.excess_before,
        expected_charges.expected
    FROM charges
    LEFT JOIN charge_duplicates ON charges.entry_id = charge_duplicates.entry_id
    LEFT JOIN expected_charges
        ON charges.request_id = expected_charges.request_id
        AND charges.currency = expected_charges.currency
        AND charge_duplicates.entry_id IS NULL
    LEFT JOIN penalised ON charges.entry_id = penalised.entry_id
    LEFT JOIN refund_order ON charges.entry_id = refund_order.entry_id
),

attributed AS (
    SELECT
        entry_id,
        ts,
        user_id,
        currency,
        request_id,
        idempotency_key,
        source_id,
        line,
        charged,
        expected,
        status,
        model,
        duplicate_of,
        refunded,
        excess_before,
        CASE
            WHEN is_duplicate THEN 'duplicate'
            WHEN metered_request_id IS NULL THEN 'orphan_charge'
            WHEN status >= 400 THEN 'charged_failed_request'
            WHEN penalties > 0 AND false_positives = penalties THEN 'abuse_penalty'
            WHEN penalties > 0 THEN 'penalty_standing'
            WHEN expected IS NULL THEN 'unpriced'
            WHEN charged - expected > CAST(0.000001 AS DECIMAL(38, 6)) THEN 'overbilled'
            WHEN expected - charged > CAST(0.000001 AS DECIMAL(38, 6)) THEN 'underbilled'
            ELSE 'ok'
        END AS cause
    FROM metered
),

grossed AS (
    SELECT
        entry_id,
        ts,
        user_id,
        currency,
        request_id,
        idempotency_key,
        source_id,
        line,
        charged,
        expected,
        status,
        model,
        duplicate_of,
        cause,
        refunded,
        excess_before,
        CASE
            WHEN cause IN ('duplicate', 'charged_failed_request') THEN charged
            WHEN cause IN ('abuse_penalty', 'overbilled')
                THEN greatest(
                    charged - coalesce(expected, charged), CAST(0 AS DECIMAL(38, 6))
                )
            ELSE CAST(0 AS DECIMAL(38, 6))
        END AS excess_gross
    FROM attributed
)

SELECT
    entry_id,
    ts,
    user_id,
    currency,
    request_id,
    idempotency_key,
    source_id,
    line,
    charged,
    expected,
    status,
    model,
    duplicate_of,
    cause,
    excess_gross,
    -- what the refunds left of the excess after the excess charged before it
    CASE
        WHEN refunded IS NULL THEN excess_gross
        ELSE greatest(
            excess_gross
            - greatest(refunded - excess_before, CAST(0 AS DECIMAL(38, 6))),
            CAST(0 AS DECIMAL(38, 6))
        )
    END AS excess
FROM grossed
