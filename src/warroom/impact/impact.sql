-- Per user and currency: the excess of each cause, the counts behind the reasons,
-- the banked resets spent because of a fault, and the minutes under false-positive
-- restrictions. Read by warroom.impact, which applies the credit policy to each row.
-- Parameters: $start, $end (the policy's incident window; NULL for none): the faults
-- (erroneous charges, abuse actions) with ts in [start, end) are remediated; their
-- effects (wrongful 429s, reimbursable top-ups, spent banked resets) count wherever
-- they fall, as the findings computed with that fault window say (DESIGN.md 7.4).
-- Reads the findings and the shared relations abuse_restrictions, user_currency and
-- user_plan.
WITH findings_in_window AS (
    SELECT detector, user_id, currency, amount, detail
    FROM findings
    WHERE
        user_id IS NOT NULL
        AND (
            detector IN ('wrongful_rejections', 'negative_balance_topups', 'spent_banked_resets')
            OR (
                ($start IS NULL OR ts >= $start) AND ($end IS NULL OR ts < $end)
            )
        )
),

sums AS (
    SELECT
        user_id,
        currency,
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
        sum(CASE WHEN detector = 'spent_banked_resets' THEN 1 ELSE 0 END) AS spent_banked_resets,
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
    GROUP BY user_id, currency
),

-- each false-positive restriction imposed in the window, for as long as it stood,
-- once per currency of its user
restrictions AS (
    SELECT
        abuse_restrictions.user_id,
        user_currency.currency,
        abuse_restrictions.action,
        abuse_restrictions.ts AS start_ts,
        abuse_restrictions.end_ts
    FROM abuse_restrictions
    LEFT JOIN user_currency ON abuse_restrictions.user_id = user_currency.user_id
    WHERE
        abuse_restrictions.classification = 'false_positive'
        AND abuse_restrictions.action IN ('throttle', 'block', 'penalty')
        AND ($start IS NULL OR abuse_restrictions.ts >= $start)
        AND ($end IS NULL OR abuse_restrictions.ts < $end)
),

-- overlapping restrictions count once: merge them into islands of time, twice — every
-- restriction (restricted_minutes), and the ones that refused service (compensation)
restriction_scopes AS (
    SELECT user_id, currency, 'all' AS scope, start_ts, end_ts
    FROM restrictions
    WHERE end_ts > start_ts
    UNION ALL
    SELECT user_id, currency, 'service' AS scope, start_ts, end_ts
    FROM restrictions
    WHERE end_ts > start_ts AND action IN ('throttle', 'block')
),

restrictions_reach AS (
    SELECT
        user_id, currency, scope, start_ts, end_ts,
        max(end_ts) OVER (
            PARTITION BY user_id, currency, scope ORDER BY start_ts, end_ts
            ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
        ) AS reach
    FROM restriction_scopes
),

restriction_islands AS (
    SELECT
        user_id, currency, scope, start_ts, end_ts,
        sum(CASE WHEN reach IS NULL OR start_ts > reach THEN 1 ELSE 0 END) OVER (
            PARTITION BY user_id, currency, scope ORDER BY start_ts, end_ts
            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
        ) AS island
    FROM restrictions_reach
),

merged_islands AS (
    SELECT user_id, currency, scope, min(start_ts) AS island_start, max(end_ts) AS island_end
    FROM restriction_islands
    GROUP BY user_id, currency, scope, island
),

restricted AS (
    SELECT
        user_id,
        currency,
        sum(CASE WHEN scope = 'all' THEN epoch_us(island_end) - epoch_us(island_start) ELSE 0 END)
            AS restricted_micros,
        sum(CASE
            WHEN scope = 'service' THEN epoch_us(island_end) - epoch_us(island_start)
            ELSE 0
        END) AS refused_service_micros
    FROM merged_islands
    GROUP BY user_id, currency
),

latest_plan AS (
    SELECT user_id, plan FROM user_plan
),

-- a quota currency is one with reset rows (DESIGN.md section 7.7)
quota_currencies AS (
    SELECT DISTINCT currency FROM ledger
    WHERE kind = 'reset'
),

per_user AS (
    SELECT
        coalesce(sums.user_id, restricted.user_id) AS user_id,
        coalesce(sums.currency, restricted.currency) AS currency,
        sums.duplicate_excess, sums.failed_request_charges, sums.abuse_penalty_excess,
        sums.overbilled, sums.topup_reimbursement, sums.wrongful_429s,
        sums.spent_banked_resets, sums.n_duplicates, sums.n_failed, sums.n_penalty,
        sums.n_overbilled, sums.n_topups, sums.n_orphans, sums.n_unreviewed,
        coalesce(restricted.restricted_micros, 0) AS restricted_micros,
        coalesce(restricted.refused_service_micros, 0) AS refused_service_micros
    FROM sums
    FULL OUTER JOIN restricted
        ON sums.user_id = restricted.user_id
        AND restricted.currency IS NOT DISTINCT FROM sums.currency
)

SELECT
    per_user.user_id,
    latest_plan.plan,
    per_user.currency,
    quota_currencies.currency IS NOT NULL AS quota_currency,
    coalesce(per_user.duplicate_excess, 0) AS duplicate_excess,
    coalesce(per_user.failed_request_charges, 0) AS failed_request_charges,
    coalesce(per_user.abuse_penalty_excess, 0) AS abuse_penalty_excess,
    coalesce(per_user.overbilled, 0) AS overbilled,
    coalesce(per_user.topup_reimbursement, 0) AS topup_reimbursement,
    coalesce(per_user.wrongful_429s, 0) AS wrongful_429s,
    coalesce(per_user.spent_banked_resets, 0) AS spent_banked_resets,
    per_user.restricted_micros,
    per_user.refused_service_micros,
    coalesce(per_user.n_orphans, 0) > 0 OR coalesce(per_user.n_unreviewed, 0) > 0 AS review,
    coalesce(per_user.n_duplicates, 0) AS n_duplicates,
    coalesce(per_user.n_failed, 0) AS n_failed,
    coalesce(per_user.n_penalty, 0) AS n_penalty,
    coalesce(per_user.n_overbilled, 0) AS n_overbilled,
    coalesce(per_user.n_topups, 0) AS n_topups,
    coalesce(per_user.n_orphans, 0) AS n_orphans,
    coalesce(per_user.n_unreviewed, 0) AS n_unreviewed
FROM per_user
LEFT JOIN latest_plan ON per_user.user_id = latest_plan.user_id
LEFT JOIN quota_currencies ON per_user.currency = quota_currencies.currency
ORDER BY per_user.user_id, per_user.currency
