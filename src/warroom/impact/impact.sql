-- Per user and currency: the excess of each cause, the counts behind the reasons,
-- and the minutes under false-positive restrictions. Read by warroom.impact, which
-- applies the credit policy to each row. Parameters: $start, $end (the policy's
-- incident window; NULL for none). Reads the findings and the shared relations
-- abuse_restrictions and user_currency, built before this runs.
WITH f AS (
    SELECT * FROM findings
    WHERE ($start IS NULL OR ts >= $start) AND ($end IS NULL OR ts < $end)
),
keys AS (
    SELECT DISTINCT user_id, currency FROM f
    WHERE user_id IS NOT NULL
      AND detector IN ('duplicate_charges', 'billing_mismatch', 'abuse_penalty_charges',
                       'negative_balance_topups', 'wrongful_rejections', 'abuse_false_positives')
),
sums AS (
    SELECT user_id, currency,
        sum(CASE WHEN detector = 'duplicate_charges' THEN amount ELSE 0 END) AS duplicate_excess,
        sum(CASE WHEN detector = 'duplicate_charges' THEN 1 ELSE 0 END) AS n_duplicates,
        sum(CASE WHEN detector = 'billing_mismatch' AND detail = 'charged_failed_request'
                 THEN amount ELSE 0 END) AS failed_request_charges,
        sum(CASE WHEN detector = 'billing_mismatch' AND detail = 'charged_failed_request'
                 THEN 1 ELSE 0 END) AS n_failed,
        sum(CASE WHEN detector = 'abuse_penalty_charges' THEN amount ELSE 0 END)
            AS abuse_penalty_excess,
        sum(CASE WHEN detector = 'abuse_penalty_charges' THEN 1 ELSE 0 END) AS n_penalty,
        sum(CASE WHEN detector = 'billing_mismatch' AND detail = 'overbilled'
                 THEN amount ELSE 0 END) AS overbilled,
        sum(CASE WHEN detector = 'billing_mismatch' AND detail = 'overbilled'
                 THEN 1 ELSE 0 END) AS n_overbilled,
        sum(CASE WHEN detector = 'negative_balance_topups' THEN amount ELSE 0 END)
            AS topup_reimbursement,
        sum(CASE WHEN detector = 'negative_balance_topups' AND amount > 0 THEN 1 ELSE 0 END)
            AS n_topups,
        sum(CASE WHEN detector = 'wrongful_rejections' THEN 1 ELSE 0 END) AS wrongful_429s,
        sum(CASE WHEN detector = 'billing_mismatch' AND detail = 'orphan_charge'
                 THEN 1 ELSE 0 END) AS n_orphans,
        sum(CASE WHEN detector = 'abuse_false_positives' AND detail = 'insufficient_history'
                 THEN 1 ELSE 0 END) AS n_unreviewed
    FROM f
    WHERE user_id IS NOT NULL
    GROUP BY user_id, currency
),
restrictions AS (
    SELECT a.user_id, uc.currency,
           greatest(a.ts, coalesce($start, a.ts)) AS start_ts,
           least(a.end_ts, coalesce($end, a.end_ts)) AS end_ts
    FROM abuse_restrictions AS a
    LEFT JOIN user_currency AS uc ON uc.user_id = a.user_id
    WHERE a.classification = 'false_positive' AND a.action IN ('throttle', 'block', 'penalty')
),
ordered AS (
    SELECT *, max(end_ts) OVER (
        PARTITION BY user_id, currency ORDER BY start_ts, end_ts
        ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS reach
    FROM restrictions WHERE end_ts > start_ts
),
islands AS (
    SELECT *, sum(CASE WHEN reach IS NULL OR start_ts > reach THEN 1 ELSE 0 END) OVER (
        PARTITION BY user_id, currency ORDER BY start_ts, end_ts
        ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS island
    FROM ordered
),
restricted AS (
    SELECT user_id, currency,
           sum(epoch_us(island_end) - epoch_us(island_start)) AS micros
    FROM (SELECT user_id, currency, island, min(start_ts) AS island_start,
                 max(end_ts) AS island_end
          FROM islands GROUP BY user_id, currency, island) AS merged
    GROUP BY user_id, currency
),
plans AS (
    SELECT user_id, plan FROM (
        SELECT user_id, plan,
               row_number() OVER (PARTITION BY user_id ORDER BY ts DESC, request_id DESC) AS rn
        FROM requests WHERE plan IS NOT NULL) AS latest
    WHERE rn = 1
),
joined AS (
    SELECT coalesce(s.user_id, r.user_id) AS user_id, coalesce(s.currency, r.currency) AS currency,
           s.* EXCLUDE (user_id, currency), coalesce(r.micros, 0) AS restricted_micros
    FROM sums AS s
    FULL OUTER JOIN restricted AS r ON r.user_id = s.user_id
        AND r.currency IS NOT DISTINCT FROM s.currency
)
SELECT j.user_id, p.plan, j.currency,
       coalesce(j.duplicate_excess, 0) AS duplicate_excess,
       coalesce(j.failed_request_charges, 0) AS failed_request_charges,
       coalesce(j.abuse_penalty_excess, 0) AS abuse_penalty_excess,
       coalesce(j.overbilled, 0) AS overbilled,
       coalesce(j.topup_reimbursement, 0) AS topup_reimbursement,
       coalesce(j.wrongful_429s, 0) AS wrongful_429s,
       j.restricted_micros,
       coalesce(j.n_orphans, 0) > 0 OR coalesce(j.n_unreviewed, 0) > 0 AS review,
       coalesce(j.n_duplicates, 0) AS n_duplicates, coalesce(j.n_failed, 0) AS n_failed,
       coalesce(j.n_penalty, 0) AS n_penalty, coalesce(j.n_overbilled, 0) AS n_overbilled,
       coalesce(j.n_topups, 0) AS n_topups, coalesce(j.n_orphans, 0) AS n_orphans,
       coalesce(j.n_unreviewed, 0) AS n_unreviewed
FROM joined AS j
LEFT JOIN plans AS p ON p.user_id = j.user_id
ORDER BY j.user_id, j.currency
