-- Every 429 that may have been wrongful (at a counterfactual balance > 0, or an
-- abuse 429 of a user with no ledger yet), with what the sequential pass of the
-- served counterfactual (DESIGN.md section 3; the Python step served_rejections)
-- needs to judge it. One row per such 429:
--
--   kind            'quota' (insufficient_quota, usage_limit_reached) or 'abuse'
--                   (abuse_blocked, rate_limit_exceeded while a false-positive
--                   throttle or block stood; restriction names it)
--   currency        that of the user's latest ledger row before the 429 (NULL: the
--                   user had no ledger yet); reset_entry_id its segment (the latest
--                   reset before it), balance and cf_balance the replayed and the
--                   counterfactual balance just before it
--   estimated_cost  what serving it would have cost: the lower median (the
--                   ceil(n/2)-th smallest) of the expected charges of the user's
--                   successful requests (status < 400) in that currency over the 7
--                   UTC days before the 429's day; else the same over every
--                   successful request made on the 429's plan in that currency;
--                   NULL when neither has any (estimate_source says which)
WITH rejected_requests AS (
    SELECT request_id, user_id, plan, ts, error_code, source_id, line
    FROM requests
    WHERE
        status = 429
        AND error_code IN (
            'insufficient_quota', 'usage_limit_reached', 'abuse_blocked', 'rate_limit_exceeded'
        )
),

rejection_probes AS (
    SELECT probe_request_id, currency, balance, cf_balance, reset_entry_id, last_ledger_ts
    FROM balance_timeline
    WHERE row_type = 'rejection'
),

-- the restrictions of the selected faults: every one, unless impact names a fault
-- window (DESIGN.md section 7.4: only the actions whose own ts is in it are undone)
abuse_restrictions AS (
    SELECT user_id, action, ts, end_ts, classification FROM abuse_restrictions
    WHERE
        ($fault_start IS NULL OR ts >= $fault_start)
        AND ($fault_end IS NULL OR ts < $fault_end)
),

-- a 429 is judged in the currency of the user's latest ledger row before it
probes_ranked AS (
    SELECT
        probe_request_id AS request_id,
        currency,
        balance,
        cf_balance,
        reset_entry_id,
        last_ledger_ts,
        row_number() OVER (
            PARTITION BY probe_request_id
            ORDER BY last_ledger_ts DESC NULLS LAST, currency ASC
        ) AS pick
    FROM rejection_probes
),

rejection_state AS (
    SELECT request_id, currency, balance, cf_balance, reset_entry_id
    FROM probes_ranked
    WHERE pick = 1 AND last_ledger_ts IS NOT NULL
),

false_positive_restrictions AS (
    SELECT
        rejected_requests.request_id,
        min(abuse_restrictions.action) AS action
    FROM rejected_requests
    INNER JOIN abuse_restrictions
        ON rejected_requests.user_id = abuse_restrictions.user_id
        AND abuse_restrictions.action IN ('throttle', 'block')
        AND abuse_restrictions.classification = 'false_positive'
        AND rejected_requests.ts >= abuse_restrictions.ts
        AND rejected_requests.ts < abuse_restrictions.end_ts
    WHERE rejected_requests.error_code IN ('abuse_blocked', 'rate_limit_exceeded')
    GROUP BY rejected_requests.request_id
),

candidates AS (
    SELECT
        rejected_requests.request_id,
        rejected_requests.user_id,
        rejected_requests.plan,
        rejected_requests.ts,
        date_trunc('day', rejected_requests.ts) AS rejection_day,
        rejected_requests.error_code,
        CASE
            WHEN false_positive_restrictions.request_id IS NULL THEN 'quota' ELSE 'abuse'
        END AS kind,
        false_positive_restrictions.action AS restriction,
        rejection_state.currency,
        rejection_state.reset_entry_id,
        rejection_state.balance,
        rejection_state.cf_balance,
        rejected_requests.source_id,
        rejected_requests.line
    FROM rejected_requests
    LEFT JOIN rejection_state ON rejected_requests.request_id = rejection_state.request_id
    LEFT JOIN false_positive_restrictions
        ON rejected_requests.request_id = false_positive_restrictions.request_id
    WHERE
        (
            rejected_requests.error_code IN ('insufficient_quota', 'usage_limit_reached')
            OR false_positive_restrictions.request_id IS NOT NULL
        )
        -- the served counterfactual is never above the counterfactual (estimates are
        -- >= 0): a 429 at a counterfactual <= 0 cannot be wrongful, nor cost anything
        AND (
            rejection_state.cf_balance > 0
            OR (
                false_positive_restrictions.request_id IS NOT NULL
                AND rejection_state.request_id IS NULL
            )
        )
),

-- the lower median of a user's own history: the ceil(n/2)-th smallest expected charge
-- (the successful requests, status < 400, with an expected charge in the currency;
-- joined to their expected charges only for the users and days asked about)
user_days AS (
    SELECT DISTINCT user_id, currency, rejection_day
    FROM candidates
    WHERE currency IS NOT NULL
),

user_history AS (
    SELECT
        user_days.user_id,
        user_days.currency,
        user_days.rejection_day,
        expected_charges.expected,
        row_number() OVER (
            PARTITION BY user_days.user_id, user_days.currency, user_days.rejection_day
            ORDER BY expected_charges.expected, expected_charges.request_id
        ) AS value_rank,
        count(*) OVER (
            PARTITION BY user_days.user_id, user_days.currency, user_days.rejection_day
        ) AS values_total
    FROM user_days
    INNER JOIN requests
        ON user_days.user_id = requests.user_id
        AND user_days.rejection_day - INTERVAL '7' DAY <= requests.ts
        AND user_days.rejection_day > requests.ts
    INNER JOIN expected_charges
        ON requests.request_id = expected_charges.request_id
        AND user_days.currency = expected_charges.currency
    WHERE requests.status < 400 AND expected_charges.expected IS NOT NULL
),

user_estimates AS (
    SELECT user_id, currency, rejection_day, expected AS estimated_cost
    FROM user_history
    WHERE values_total BETWEEN 2 * value_rank - 1 AND 2 * value_rank
),

-- else the lower median of every successful request made on the 429's plan
plan_days AS (
    SELECT DISTINCT candidates.plan, candidates.currency, candidates.rejection_day
    FROM candidates
    LEFT JOIN user_estimates
        ON candidates.user_id = user_estimates.user_id
        AND candidates.currency = user_estimates.currency
        AND candidates.rejection_day = user_estimates.rejection_day
    WHERE
        candidates.currency IS NOT NULL
        AND candidates.plan IS NOT NULL
        AND user_estimates.user_id IS NULL
),

plan_history AS (
    SELECT
        plan_days.plan,
        plan_days.currency,
        plan_days.rejection_day,
        expected_charges.expected,
        row_number() OVER (
            PARTITION BY plan_days.plan, plan_days.currency, plan_days.rejection_day
            ORDER BY expected_charges.expected, expected_charges.request_id
        ) AS value_rank,
        count(*) OVER (
            PARTITION BY plan_days.plan, plan_days.currency, plan_days.rejection_day
        ) AS values_total
    FROM plan_days
    INNER JOIN requests
        ON plan_days.plan = requests.plan
        AND plan_days.rejection_day - INTERVAL '7' DAY <= requests.ts
        AND plan_days.rejection_day > requests.ts
    INNER JOIN expected_charges
        ON requests.request_id = expected_charges.request_id
        AND plan_days.currency = expected_charges.currency
    WHERE
        requests.status < 400
        AND expected_charges.expected IS NOT NULL
        -- a filter first, so no plan asked about (the usual case) reads no request
        AND requests.plan IN (SELECT asked.plan FROM plan_days AS asked)
),

plan_estimates AS (
    SELECT plan, currency, rejection_day, expected AS estimated_cost
    FROM plan_history
    WHERE values_total BETWEEN 2 * value_rank - 1 AND 2 * value_rank
)

SELECT
    candidates.request_id,
    candidates.user_id,
    candidates.currency,
    candidates.reset_entry_id,
    candidates.ts,
    candidates.error_code,
    candidates.kind,
    candidates.restriction,
    candidates.balance,
    candidates.cf_balance,
    coalesce(user_estimates.estimated_cost, plan_estimates.estimated_cost) AS estimated_cost,
    CASE
        WHEN user_estimates.estimated_cost IS NOT NULL THEN 'user'
        WHEN plan_estimates.estimated_cost IS NOT NULL THEN 'plan'
    END AS estimate_source,
    candidates.source_id,
    candidates.line
FROM candidates
LEFT JOIN user_estimates
    ON candidates.user_id = user_estimates.user_id
    AND candidates.currency = user_estimates.currency
    AND candidates.rejection_day = user_estimates.rejection_day
LEFT JOIN plan_estimates
    ON candidates.plan = plan_estimates.plan
    AND candidates.currency = plan_estimates.currency
    AND candidates.rejection_day = plan_estimates.rejection_day
