-- title: Unbilled requests
-- description: A row is a successful request with tokens and no charge: revenue
--   leak, not a user credit. Only inside the time both the request log and the
--   ledger cover (and not in an hour where the ledger has no rows at all). The
--   amount is the expected charge in the user's currency (that of the user's
--   latest ledger row; usd for a user without one).
-- severity: low
WITH successful_requests AS (
    SELECT request_id, user_id, ts, model, source_id, line
    FROM requests
    WHERE status < 400 AND input_tokens + output_tokens > 0
),

request_span AS (
    SELECT
        min(ts) AS first_ts,
        max(ts) AS last_ts
    FROM requests
),

ledger_span AS (
    SELECT
        min(ts) AS first_ts,
        max(ts) AS last_ts
    FROM ledger
),

ledger_hours AS (
    SELECT DISTINCT date_trunc('hour', ts) AS hour FROM ledger
),

uncharged AS (
    SELECT request_id, currency, expected
    FROM expected_charges
    WHERE NOT is_charged
),

-- the time both the request log and the ledger cover
covered AS (
    SELECT
        greatest(request_span.first_ts, ledger_span.first_ts) AS from_ts,
        least(request_span.last_ts, ledger_span.last_ts) AS to_ts
    FROM request_span
    CROSS JOIN ledger_span
),

unbilled AS (
    SELECT
        successful_requests.user_id,
        uncharged.currency,
        successful_requests.ts,
        successful_requests.request_id,
        uncharged.expected,
        successful_requests.model,
        successful_requests.source_id,
        successful_requests.line
    FROM successful_requests
    INNER JOIN uncharged ON successful_requests.request_id = uncharged.request_id
    CROSS JOIN covered
    INNER JOIN ledger_hours ON date_trunc('hour', successful_requests.ts) = ledger_hours.hour
    WHERE
        successful_requests.ts >= covered.from_ts
        AND successful_requests.ts <= covered.to_ts
)

SELECT
    'unbilled_requests' AS detector,
    user_id,
    currency,
    ts,
    request_id,
    CAST(NULL AS VARCHAR) AS entry_id,
    expected AS amount,
    'no charge for ' || coalesce(model, 'unknown model') AS detail,
    source_id,
    line
FROM unbilled
WHERE
    ($since IS NULL OR ts >= $since)
    AND ($until IS NULL OR ts < $until)
ORDER BY user_id, currency, ts, request_id
