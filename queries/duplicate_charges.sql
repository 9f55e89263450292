-- title: Duplicate charges
-- description: A row is an extra charge of one request: distinct entry_ids of kind
--   charge with the same request_id (or idempotency_key). The earliest is
--   legitimate; each later one is excess, less the refunds that name the request
--   (a duplicate refunded in full is listed with amount 0: it is still an erroneous
--   row of the incident, but nothing is owed for it). An entry shipped twice (same
--   entry_id) is one row, never a duplicate.
-- severity: high
WITH charge_attribution AS (
    SELECT
        user_id, currency, ts, request_id, entry_id, charged, cause, excess, duplicate_of,
        source_id, line
    FROM charge_attribution
)

SELECT
    'duplicate_charges' AS detector,
    user_id,
    currency,
    ts,
    request_id,
    entry_id,
    excess AS amount,
    'duplicate of ' || duplicate_of
    || CASE
        WHEN excess < charged THEN '; ' || CAST(charged - excess AS VARCHAR) || ' refunded'
        ELSE ''
    END AS detail,
    charged,
    source_id,
    line
FROM charge_attribution
WHERE
    cause = 'duplicate'
    AND ($since IS NULL OR ts >= $since)
    AND ($until IS NULL OR ts < $until)
ORDER BY user_id, currency, ts, entry_id
