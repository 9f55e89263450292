-- title: Billing mismatches
-- description: A row is a legitimate (first) charge that disagrees with the metered
--   request: charged_failed_request (status >= 400 yet charged: all of it is
--   excess), overbilled (charged - expected), underbilled (expected - charged;
--   revenue, not a credit) or orphan_charge (no such request in the logs; for
--   review). Charges under a standing penalty are never over- or underbilled.
-- severity: medium
-- param: tolerance DECIMAL 0.000001 difference allowed between charged and expected
WITH charge_attribution AS (
    SELECT
        user_id, currency, ts, request_id, entry_id, charged, expected, cause, source_id, line
    FROM charge_attribution
)

SELECT
    'billing_mismatch' AS detector,
    user_id,
    currency,
    ts,
    request_id,
    entry_id,
    CASE
        WHEN cause IN ('orphan_charge', 'charged_failed_request') THEN charged
        WHEN charged > expected THEN charged - expected
        ELSE expected - charged
    END AS amount,
    CASE
        WHEN cause IN ('orphan_charge', 'charged_failed_request') THEN cause
        WHEN charged > expected THEN 'overbilled'
        ELSE 'underbilled'
    END AS detail,
    charged,
    expected,
    source_id,
    line
FROM charge_attribution
WHERE
    (
        cause IN ('orphan_charge', 'charged_failed_request')
        OR (
            cause IN ('ok', 'overbilled', 'underbilled')
            AND abs(charged - expected) > CAST($tolerance AS DECIMAL(38, 6))
        )
    )
    AND ($since IS NULL OR ts >= $since)
    AND ($until IS NULL OR ts < $until)
ORDER BY user_id, currency, ts, entry_id
