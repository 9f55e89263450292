-- title: Wrongful rejections
-- description: A row is a 429 the correct state would not have caused: with
--   error_code insufficient_quota or usage_limit_reached while the counterfactual
--   balance (in the currency of the user's latest ledger row before it) was > 0;
--   or with abuse_blocked or rate_limit_exceeded while a false-positive throttle
--   or block stood.
-- severity: high
WITH rejections AS (
    SELECT probe_request_id AS request_id, user_id, currency, ts, balance, cf_balance,
           last_ledger_ts, source_id, line,
           row_number() OVER (
               PARTITION BY probe_request_id
               ORDER BY last_ledger_ts DESC NULLS LAST, currency) AS pick
    FROM balance_timeline
    WHERE row_type = 'rejection'
),
rejection_state AS (
    SELECT * FROM rejections WHERE pick = 1 AND last_ledger_ts IS NOT NULL
),
blocked AS (
    SELECT r.request_id, min(a.action) AS action
    FROM requests AS r
    JOIN abuse_restrictions AS a
        ON a.user_id = r.user_id AND a.action IN ('throttle', 'block')
        AND a.classification = 'false_positive'
        AND r.ts >= a.ts AND r.ts < a.end_ts
    WHERE r.status = 429 AND r.error_code IN ('abuse_blocked', 'rate_limit_exceeded')
    GROUP BY r.request_id
),
wrongful AS (
    SELECT r.user_id, s.currency, r.ts, r.request_id, r.error_code,
           s.balance, s.cf_balance, r.source_id, r.line,
           CASE
               WHEN r.error_code IN ('insufficient_quota', 'usage_limit_reached')
                   THEN r.error_code || ' while the counterfactual balance was '
                        || CAST(s.cf_balance AS VARCHAR)
               ELSE r.error_code || ' during a false-positive ' || b.action
           END AS detail
    FROM requests AS r
    LEFT JOIN rejection_state AS s ON s.request_id = r.request_id
    LEFT JOIN blocked AS b ON b.request_id = r.request_id
    WHERE r.status = 429
      AND ((r.error_code IN ('insufficient_quota', 'usage_limit_reached') AND s.cf_balance > 0)
           OR b.request_id IS NOT NULL)
)
SELECT 'wrongful_rejections' AS detector, user_id, currency, ts, request_id,
       CAST(NULL AS VARCHAR) AS entry_id, CAST(NULL AS DECIMAL(38,6)) AS amount, detail,
       error_code, balance, cf_balance, source_id, line
FROM wrongful
WHERE ($since IS NULL OR ts >= $since)
  AND ($until IS NULL OR ts < $until)
ORDER BY user_id, currency, ts, request_id
