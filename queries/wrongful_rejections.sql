-- title: Wrongful rejections
-- description: A row is a 429 the correct state would not have caused, taken in
--   (ts, request_id) order per user and currency against the served counterfactual
--   balance (the counterfactual balance less the estimated cost of each earlier
--   wrongful 429 since the last reset, in the currency of the user's latest ledger
--   row before it): insufficient_quota or usage_limit_reached while it was > 0;
--   abuse_blocked or rate_limit_exceeded during a false-positive throttle or block
--   while it was > 0 (or the user had no ledger).
-- severity: high
WITH served_rejections AS (
    SELECT
        request_id, user_id, currency, ts, error_code, kind, restriction, balance,
        cf_balance, served_cf_balance, estimated_cost, estimate_source, wrongful,
        source_id, line
    FROM served_rejections
),

wrongful AS (
    SELECT
        request_id, user_id, currency, ts, error_code, balance, cf_balance,
        served_cf_balance, estimated_cost, estimate_source, source_id, line,
        error_code
        || CASE
            WHEN kind = 'abuse' THEN ' during a false-positive ' || restriction ELSE ''
        END
        || CASE
            WHEN served_cf_balance IS NULL THEN ' (no ledger)'
            ELSE
                ' while the served counterfactual balance was '
                || CAST(served_cf_balance AS VARCHAR)
                || CASE
                    WHEN estimated_cost IS NULL THEN ' (no cost estimate)'
                    ELSE ' (estimated cost ' || CAST(estimated_cost AS VARCHAR) || ')'
                END
        END AS detail
    FROM served_rejections
    WHERE wrongful
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
    served_cf_balance,
    estimated_cost,
    estimate_source,
    source_id,
    line
FROM wrongful
WHERE
    ($since IS NULL OR ts >= $since)
    AND ($until IS NULL OR ts < $until)
ORDER BY user_id, currency, ts, request_id
