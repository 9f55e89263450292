-- title: Abuse penalty charges
-- description: A row is a charge made while false-positive penalties stood, charged
--   above its price: the amount is charged - expected.
-- severity: high
WITH charge_attribution AS (
    SELECT
        user_id, currency, ts, request_id, entry_id, charged, expected, cause, excess_gross,
        source_id, line
    FROM charge_attribution
)

SELECT
    'abuse_penalty_charges' AS detector,
    user_id,
    currency,
    ts,
    request_id,
    entry_id,
    excess_gross AS amount,
    'charged ' || CAST(charged AS VARCHAR) || ', expected ' || CAST(expected AS VARCHAR)
        AS detail,
    charged,
    expected,
    source_id,
    line
FROM charge_attribution
WHERE
    cause = 'abuse_penalty'
    AND excess_gross > 0
    AND ($since IS NULL OR ts >= $since)
    AND ($until IS NULL OR ts < $until)
ORDER BY user_id, currency, ts, entry_id
