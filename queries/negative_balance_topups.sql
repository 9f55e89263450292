-- title: Top-ups that cured an erroneous negative balance
-- description: A row is a top-up made while the balance was < 0 and the served
--   counterfactual balance (the counterfactual less the estimated cost of the
--   wrongful 429s before it since the last reset) was >= 0. Reimbursable =
--   min(top-up, the outstanding excess at that moment (counterfactual - balance,
--   not served) less what earlier such top-ups since the last reset were already
--   reimbursed). A qualifying top-up whose excess earlier top-ups
--   already cover is listed with amount 0.
-- severity: high
WITH balance_timeline AS (
    SELECT
        user_id, currency, ts, row_type, entry_id, reset_entry_id, amount, balance,
        cf_balance, outstanding_excess, source_id, line
    FROM balance_timeline
),

wrongful_rejections AS (
    SELECT user_id, currency, reset_entry_id, ts, charged_cost
    FROM served_rejections
    WHERE wrongful
),

topups AS (
    SELECT
        user_id, currency, ts, entry_id, reset_entry_id, amount AS topup, balance,
        cf_balance, outstanding_excess, source_id, line
    FROM balance_timeline
    WHERE row_type = 'topup'
),

-- the served counterfactual: what the wrongful 429s before it in its segment would
-- have cost (the reimbursable amount still reads the counterfactual, not this)
served_topups AS (
    SELECT
        topups.user_id, topups.currency, topups.ts, topups.entry_id, topups.reset_entry_id,
        topups.topup, topups.balance, topups.cf_balance, topups.outstanding_excess,
        topups.source_id, topups.line,
        topups.cf_balance - coalesce(
            sum(wrongful_rejections.charged_cost), CAST(0 AS DECIMAL(38, 6))
        ) AS served_cf_balance
    FROM topups
    LEFT JOIN wrongful_rejections
        ON topups.user_id = wrongful_rejections.user_id
        AND topups.currency = wrongful_rejections.currency
        AND coalesce(topups.reset_entry_id, '') = coalesce(wrongful_rejections.reset_entry_id, '')
        AND topups.ts > wrongful_rejections.ts
    GROUP BY
        topups.user_id, topups.currency, topups.ts, topups.entry_id, topups.reset_entry_id,
        topups.topup, topups.balance, topups.cf_balance, topups.outstanding_excess,
        topups.source_id, topups.line
),

qualifying AS (
    SELECT
        user_id, currency, ts, entry_id, reset_entry_id, topup, balance,
        cf_balance, served_cf_balance, outstanding_excess, source_id, line
    FROM served_topups
    WHERE balance < 0 AND served_cf_balance >= 0
),

cumulative AS (
    SELECT
        user_id, currency, ts, entry_id, reset_entry_id, topup, balance, cf_balance,
        served_cf_balance, outstanding_excess, source_id, line,
        sum(topup) OVER (
            PARTITION BY user_id, currency, reset_entry_id
            ORDER BY ts, entry_id
            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
        ) AS topped_up
    FROM qualifying
),

-- total reimbursable through top-up i:
--   topped_up_i + min(0, min over k <= i of (outstanding_k - topped_up_k))
capped AS (
    SELECT
        user_id, currency, ts, entry_id, reset_entry_id, topup, balance, cf_balance,
        served_cf_balance, source_id, line,
        topped_up + least(
            CAST(0 AS DECIMAL(38, 6)),
            min(outstanding_excess - topped_up) OVER (
                PARTITION BY user_id, currency, reset_entry_id
                ORDER BY ts, entry_id
                ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
            )
        ) AS reimbursed_through
    FROM cumulative
),

stepped AS (
    SELECT
        user_id, currency, ts, entry_id, topup, balance, cf_balance, served_cf_balance,
        source_id, line,
        reimbursed_through - coalesce(
            lag(reimbursed_through) OVER (
                PARTITION BY user_id, currency, reset_entry_id
                ORDER BY ts, entry_id
            ),
            CAST(0 AS DECIMAL(38, 6))
        ) AS reimbursable
    FROM capped
)

SELECT
    'negative_balance_topups' AS detector,
    user_id,
    currency,
    ts,
    CAST(NULL AS VARCHAR) AS request_id,
    entry_id,
    greatest(reimbursable, CAST(0 AS DECIMAL(38, 6))) AS amount,
    'top-up of ' || CAST(topup AS VARCHAR) || ' at balance ' || CAST(balance AS VARCHAR)
    || ' (counterfactual ' || CAST(cf_balance AS VARCHAR) || ', served '
    || CAST(served_cf_balance AS VARCHAR) || ')' AS detail,
    topup,
    balance,
    cf_balance,
    served_cf_balance,
    source_id,
    line
FROM stepped
WHERE
    ($since IS NULL OR ts >= $since)
    AND ($until IS NULL OR ts < $until)
ORDER BY user_id, currency, ts, entry_id
