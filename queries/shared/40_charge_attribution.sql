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
WITH flagged AS (
    SELECT l.entry_id, l.ts, l.user_id, l.currency, l.request_id, l.idempotency_key,
           l.source_id, l.line, CAST(-l.amount AS DECIMAL(38,6)) AS charged,
           d.duplicate_of, d.entry_id IS NOT NULL AS is_duplicate
    FROM ledger AS l
    LEFT JOIN charge_duplicates AS d ON d.entry_id = l.entry_id
    WHERE l.kind = 'charge'
),
refunds AS (
    SELECT user_id, currency, request_id, sum(CAST(amount AS DECIMAL(38,6))) AS refunded
    FROM ledger
    WHERE kind = 'refund' AND request_id IS NOT NULL
    GROUP BY user_id, currency, request_id
),
penalised AS (
    SELECT f.entry_id,
           count(*) AS penalties,
           sum(CASE WHEN p.classification = 'false_positive' THEN 1 ELSE 0 END) AS false_positives
    FROM flagged AS f
    JOIN abuse_restrictions AS p
        ON p.user_id = f.user_id AND p.action = 'penalty'
        AND f.ts >= p.ts AND f.ts < p.end_ts
    WHERE NOT f.is_duplicate
    GROUP BY f.entry_id
),
-- a first charge beside its request (a duplicate's request was judged with its
-- first charge), the price at the request's time and the penalties standing
metered AS (
    SELECT f.*, r.request_id AS metered_request_id, r.status, r.model,
           pe.penalties, pe.false_positives,
           CASE
               WHEN r.status >= 400 THEN CAST(0 AS DECIMAL(38,6))
               ELSE ROUND(
                   (CAST(r.input_tokens - r.cached_tokens AS DECIMAL(38,6)) * p.input_per_mtok
                    + CAST(r.cached_tokens AS DECIMAL(38,6)) * p.cached_per_mtok
                    + CAST(r.output_tokens AS DECIMAL(38,6)) * p.output_per_mtok)
                   * CAST(0.000001 AS DECIMAL(7,6)), 6)
           END AS expected
    FROM flagged AS f
    LEFT JOIN requests AS r ON r.request_id = f.request_id AND NOT f.is_duplicate
    LEFT JOIN price_intervals AS p
        ON p.model = r.model AND p.currency = f.currency
        AND r.ts >= p.effective_from AND r.ts < p.effective_to
    LEFT JOIN penalised AS pe ON pe.entry_id = f.entry_id
),
attributed AS (
    SELECT entry_id, ts, user_id, currency, request_id, idempotency_key,
           source_id, line, charged, duplicate_of, expected, status, model,
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
    FROM metered
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
),
-- only a request that refunds name needs its charges in order: how much of the
-- refund its earlier excess took
refunded_charges AS (
    SELECT g.entry_id, rf.refunded,
           coalesce(sum(g.excess_gross) OVER (
               PARTITION BY g.user_id, g.currency, g.request_id
               ORDER BY CASE WHEN g.cause = 'duplicate' THEN 0 ELSE 1 END, g.ts, g.entry_id
               ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING),
               CAST(0 AS DECIMAL(38,6))) AS excess_before
    FROM grossed AS g
    JOIN refunds AS rf
        ON rf.user_id = g.user_id AND rf.currency = g.currency AND rf.request_id = g.request_id
)
SELECT g.entry_id, g.ts, g.user_id, g.currency, g.request_id, g.idempotency_key, g.source_id,
       g.line, g.charged, g.expected, g.status, g.model, g.duplicate_of, g.cause, g.excess_gross,
       CASE WHEN rc.entry_id IS NULL THEN g.excess_gross
            ELSE greatest(g.excess_gross - greatest(rc.refunded - rc.excess_before,
                                                    CAST(0 AS DECIMAL(38,6))),
                          CAST(0 AS DECIMAL(38,6)))
       END AS excess
FROM grossed AS g
LEFT JOIN refunded_charges AS rc ON rc.entry_id = g.entry_id
