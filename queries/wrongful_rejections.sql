-- title: Wrongful rejections
-- description: A row is a 429 the correct state would not have caused: with
--   error_code insufficient_quota or usage_limit_reached while the counterfactual
--   balance (in the currency of the user's latest ledger row before it) was > 0;
--   or with abuse_blocked or rate_limit_exceeded while a false-positive throttle
--   or block stood.
-- severity: high
WITH rejected_requests AS (
    SELECT request_id, user_id, ts, status, error_code, source_id, line
    FROM requests
    WHERE status = 429
),

rejection_probes AS (
    SELECT probe_request_id, currency, balance, cf_balance, last_ledger_ts
    FROM balance_timeline
    WHERE row_type = 'rejection'
),

abuse_restrictions AS (
    SELECT user_id, action, ts, end_ts, classification FROM abuse_restrictions
),

-- a 429 is judged in the currency of the user's latest ledger row before it
probes_ranked AS (
    SELECT
        probe_request_id AS request_id,
        currency,
        balance,
        cf_balance,
        last_ledger_ts,
        row_number() OVER (
            PARTITION BY probe_request_id
            ORDER BY last_ledger_ts DESC NULLS LAST, currency ASC
        ) AS pick
    FROM rejection_probes
),

rejection_state AS (
    SELECT request_id, currency, balance, cf_balance
    FROM probes_ranked
    WHERE pick = 1 AND last_ledger_ts IS NOT NULL
),

blocked AS (
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

wrongful AS (
    SELECT
        rejected_requests.user_id,
        rejection_state.currency,
        rejected_requests.ts,
        rejected_requests.request_id,
        rejected_requests.error_code,
        rejection_state.balance,
        rejection_state.cf_balance,
        rejected_requests.source_id,
        rejected_requests.line,
        CASE
            WHEN rejected_requests.error_code IN ('insufficient_quota', 'usage_limit_reached')
                THEN
                    rejected_requests.error_code || ' while the counterfactual balance was '
                    || CAST(rejection_state.cf_balance AS VARCHAR)
            ELSE rejected_requests.error_code || ' during a false-positive ' || blocked.action
        END AS detail
    FROM rejected_requests
    LEFT JOIN rejection_state ON rejected_requests.request_id = rejection_state.request_id
    LEFT JOIN blocked ON rejected_requests.request_id = blocked.request_id
    WHERE
        (
            rejected_requests.error_code IN ('insufficient_quota', 'usage_limit_reached')
            AND rejection_state.cf_balance > 0
        )
        OR blocked.request_id IS NOT NULL
)

SELECT
    'wrongful_rejections' AS detector,
    user_id,
    currency,
    ts,
    request_id,
    CAST(NULL AS VARCHAR) AS entry_id,
    CAST(NULL AS DECIMAL(38, 6)) AS amount,
    detail,
    error_code,
    balance,
    cf_balance,
    source_id,
    line
FROM wrongful
WHERE
    ($since IS NULL OR ts >= $since)
    AND ($until IS NULL OR ts < $until)
ORDER BY user_id, currency, ts, request_id
