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
WITH refunds AS (
    SELECT user_id, currency, request_id, sum(CAST(amount AS DECIMAL(38,6))) AS refunded
    FROM ledger
    WHERE kind = 'refund' AND request_id IS NOT NULL
    GROUP BY user_id, currency, request_id
),
-- the charges of the requests that refunds name, in the order a refund is applied
-- (duplicates first, then the first charge): how much of the refund the excess
-- before each took. A duplicate's excess is its whole charge, and the first charge
-- comes last, so this needs no more than the duplicates.
refund_order AS (
    SELECT l.entry_id, rf.refunded,
           coalesce(sum(CASE WHEN d.entry_id IS NOT NULL THEN CAST(-l.amount AS DECIMAL(38,6))
                             ELSE CAST(0 AS DECIMAL(38,6)) END) OVER (
               PARTITION BY l.user_id, l.currency, l.request_id
               ORDER BY CASE WHEN d.entry_id IS NOT NULL THEN 0 ELSE 1 END, l.ts, l.entry_id
               ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING),
               CAST(0 AS DECIMAL(38,6))) AS excess_before
    FROM ledger AS l
    JOIN refunds AS rf
        ON rf.user_id = l.user_id AND rf.currency = l.currency AND rf.request_id = l.request_id
    LEFT JOIN charge_duplicates AS d ON d.entry_id = l.entry_id
    WHERE l.kind = 'charge'
),
-- the penalties standing at each charge (only a first charge is judged by them)
penalised AS (
    SELECT l.entry_id,
           count(*) AS penalties,
           sum(CASE WHEN p.classification = 'false_positive' THEN 1 ELSE 0 END) AS false_positives
    FROM ledger AS l
    JOIN abuse_restrictions AS p
        ON p.user_id = l.user_id AND p.action = 'penalty'
        AND l.ts >= p.ts AND l.ts < p.end_ts
    WHERE l.kind = 'charge'
    GROUP BY l.entry_id
),
-- a first charge beside its request (a duplicate's request was judged with its
-- first charge), the price at the request's time and the penalties standing
metered AS (
    SELECT l.entry_id, l.ts, l.user_id, l.currency, l.request_id, l.idempotency_key,
           l.source_id, l.line, CAST(-l.amount AS DECIMAL(38,6)) AS charged,
           d.duplicate_of, d.entry_id IS NOT NULL AS is_duplicate,
           r.request_id AS metered_request_id, r.status, r.model,
           pe.penalties, pe.false_positives, ro.refunded, ro.excess_before,
           CASE
               WHEN r.status >= 400 THEN CAST(0 AS DECIMAL(38,6))
               ELSE ROUND(
                   (CAST(r.input_tokens - r.cached_tokens AS DECIMAL(38,6)) * p.input_per_mtok
                    + CAST(r.cached_tokens AS DECIMAL(38,6)) * p.cached_per_mtok
                    + CAST(r.output_tokens AS DECIMAL(38,6)) * p.output_per_mtok)
                   * CAST(0.000001 AS DECIMAL(7,6)), 6)
           END AS expected
    FROM ledger AS l
    LEFT JOIN charge_duplicates AS d ON d.entry_id = l.entry_id
    LEFT JOIN requests AS r ON r.request_id = l.request_id AND d.entry_id IS NULL
    LEFT JOIN price_intervals AS p
        ON p.model = r.model AND p.currency = l.currency
        AND r.ts >= p.effective_from AND r.ts < p.effective_to
    LEFT JOIN penalised AS pe ON pe.entry_id = l.entry_id
    LEFT JOIN refund_order AS ro ON ro.entry_id = l.entry_id
    WHERE l.kind = 'charge'
),
attributed AS (
    SELECT m.*,
           CASE
               WHEN is_duplicate THEN 'duplicate'
               WHEN metered_request_id IS NULL THEN 'orphan_charge'
               WHEN status >= 400 THEN 'charged_failed_request'
               WHEN penalties > 0 AND false_positives = penalties THEN 'abuse_penalty'
               WHEN penalties > 0 THEN 'penalty_standing'
               WHEN expected IS NULL THEN 'unpriced'
               WHEN charged - expected > CAST(0.000001 AS DECIMAL(38,6)) THEN 'overbilled'
               WHEN expected - charged > CAST(0.000001 AS DECIMAL(38,6)) THEN 'underbilled'
               ELSE 'ok'
           END AS cause
    FROM metered AS m
),
grossed AS (
    SELECT a.*,
           CASE
               WHEN cause IN ('duplicate', 'charged_failed_request') THEN charged
               WHEN cause IN ('abuse_penalty', 'overbilled')
                   THEN greatest(charged - coalesce(expected, charged), CAST(0 AS DECIMAL(38,6)))
               ELSE CAST(0 AS DECIMAL(38,6))
           END AS excess_gross
    FROM attributed AS a
)
SELECT entry_id, ts, user_id, currency, request_id, idempotency_key, source_id, line,
       charged, expected, status, model, duplicate_of, cause, excess_gross,
       CASE WHEN refunded IS NULL THEN excess_gross
            ELSE greatest(excess_gross - greatest(refunded - excess_before,
                                                  CAST(0 AS DECIMAL(38,6))),
                          CAST(0 AS DECIMAL(38,6)))
       END AS excess
FROM grossed
