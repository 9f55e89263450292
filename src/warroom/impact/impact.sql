-- Per user and currency: the excess of each cause, the counts behind the reasons,
-- and the minutes under false-positive restrictions. Read by warroom.impact, which
-- applies the credit policy to each row. Parameters: $start, $end (the policy's
-- incident window; NULL for none). Reads the findings and the shared relations
-- abuse_restrictions and user_currency, built before this runs.
WITH findings_in_window AS (
    SELECT * FROM findings
    WHERE ($start IS NULL OR ts >= $start) AND ($end IS NULL OR ts < $end)
),

sums AS (
    SELECT
        user_id, currency,
        sum(CASE WHEN detector = 'duplicate_charges' THEN amount ELSE 0 END) AS duplicate_excess,
        sum(CASE WHEN detector = 'duplicate_charges' THEN 1 ELSE 0 END) AS n_duplicates,
        sum(CASE
            WHEN detector = 'billing_mismatch' AND detail = 'charged_failed_request'
                THEN amount
            ELSE 0
        END) AS failed_request_charges,
        sum(CASE
            WHEN detector = 'billing_mismatch' AND detail = 'charged_failed_request'
                THEN 1
            ELSE 0
        END) AS n_failed,
        sum(CASE WHEN detector = 'abuse_penalty_charges' THEN amount ELSE 0 END)
            AS abuse_penalty_excess,
        sum(CASE WHEN detector = 'abuse_penalty_charges' THEN 1 ELSE 0 END) AS n_penalty,
        sum(CASE
            WHEN detector = 'billing_mismatch' AND detail = 'overbilled'
                THEN amount
            ELSE 0
        END) AS overbilled,
        sum(CASE
            WHEN detector = 'billing_mismatch' AND detail = 'overbilled'
                THEN 1
            ELSE 0
        END) AS n_overbilled,
        sum(CASE WHEN detector = 'negative_balance_topups' THEN amount ELSE 0 END)
            AS topup_reimbursement,
        sum(CASE WHEN detector = 'negative_balance_topups' AND amount > 0 THEN 1 ELSE 0 END)
            AS n_topups,
        sum(CASE WHEN detector = 'wrongful_rejections' THEN 1 ELSE 0 END) AS wrongful_429s,
        sum(CASE
            WHEN detector = 'billing_mismatch' AND detail = 'orphan_charge'
                THEN 1
            ELSE 0
        END) AS n_orphans,
        sum(CASE
            WHEN detector = 'abuse_false_positives' AND detail = 'insufficient_history'
                THEN 1
            ELSE 0
        END) AS n_unreviewed
    FROM findings_in_window
    WHERE user_id IS NOT NULL
    GROUP BY user_id, currency
),

restrictions AS (
    SELECT
        restriction.user_id, user_cur.currency,
        greatest(restriction.ts, coalesce($start, restriction.ts)) AS start_ts,
        least(restriction.end_ts, coalesce($end, restriction.end_ts)) AS end_ts
    FROM abuse_restrictions AS restriction
    LEFT JOIN user_currency AS user_cur ON restriction.user_id = user_cur.user_id
    WHERE
        restriction.classification = 'false_positive'
        AND restriction.action IN ('throttle', 'block', 'penalty')
),

ordered AS (
    SELECT
        *, max(end_ts) OVER (
            PARTITION BY user_id, currency ORDER BY start_ts, end_ts
            ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
        ) AS reach
    FROM restrictions
    WHERE end_ts > start_ts
),

islands AS (
    SELECT
        *, sum(CASE WHEN reach IS NULL OR start_ts > reach THEN 1 ELSE 0 END) OVER (
            PARTITION BY user_id, currency ORDER BY start_ts, end_ts
            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
        ) AS island
    FROM ordered
),

restricted AS (
    SELECT
        user_id, currency,
        sum(epoch_us(island_end) - epoch_us(island_start)) AS micros
    FROM (SELECT
        user_id, currency, island, min(start_ts) AS island_start,
        max(end_ts) AS island_end
    FROM islands
    GROUP BY user_id, currency, island) AS merged
    GROUP BY user_id, currency
),

plans AS (
    SELECT user_id, plan FROM (
        SELECT
            user_id, plan,
            row_number() OVER (PARTITION BY user_id ORDER BY ts DESC, request_id DESC) AS rn
        FROM requests
        WHERE plan IS NOT NULL
    ) AS latest
    WHERE rn = 1
),

joined AS (
    SELECT
        coalesce(sums.user_id, restricted.user_id) AS user_id,
        coalesce(sums.currency, restricted.currency) AS currency,
        sums.* EXCLUDE (user_id, currency), coalesce(restricted.micros, 0) AS restricted_micros
    FROM sums
    FULL OUTER JOIN
        restricted ON sums.user_id = restricted.user_id
    AND restricted.currency IS NOT DISTINCT FROM sums.currency
)

SELECT
    joined.user_id, plans.plan, joined.currency,
    coalesce(joined.duplicate_excess, 0) AS duplicate_excess,
    coalesce(joined.failed_request_charges, 0) AS failed_request_charges,
    coalesce(joined.abuse_penalty_excess, 0) AS abuse_penalty_excess,
    coalesce(joined.overbilled, 0) AS overbilled,
    coalesce(joined.topup_reimbursement, 0) AS topup_reimbursement,
    coalesce(joined.wrongful_429s, 0) AS wrongful_429s,
    joined.restricted_micros,
    coalesce(joined.n_orphans, 0) > 0 OR coalesce(joined.n_unreviewed, 0) > 0 AS review,
    coalesce(joined.n_duplicates, 0) AS n_duplicates, coalesce(joined.n_failed, 0) AS n_failed,
    coalesce(joined.n_penalty, 0) AS n_penalty, coalesce(joined.n_overbilled, 0) AS n_overbilled,
    coalesce(joined.n_topups, 0) AS n_topups, coalesce(joined.n_orphans, 0) AS n_orphans,
    coalesce(joined.n_unreviewed, 0) AS n_unreviewed
FROM joined
LEFT JOIN plans ON joined.user_id = plans.user_id
ORDER BY joined.user_id, joined.currency
