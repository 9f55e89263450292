-- title: Unbilled requests
-- description: A row is a successful request with tokens and no charge: revenue
--   leak, not a user credit. Only inside the time both the request log and the
--   ledger cover (and not in an hour where the ledger has no rows at all). The
--   amount is the expected charge in the user's currency (that of the user's
--   latest ledger row; usd for a user without one).
-- severity: low
-- The successful requests are chosen through `uncharged` (a request's status is in
-- expected_charges), and the request log is cut to them before any other join:
-- DuckDB then hashes those few, never the request log (at 50M rows it built its
-- table on the requests of the ledger's hours, 25M rows, and spilled them)
WITH uncharged AS (
    SELECT request_id, currency, expected
    FROM expected_charges
    WHERE NOT is_charged AND status < 400
),

logged_requests AS (
    SELECT
        requests.request_id, requests.user_id, requests.ts, requests.model,
        requests.input_tokens, requests.output_tokens, requests.source_id, requests.line
    FROM requests
    WHERE requests.request_id IN (SELECT uncharged.request_id FROM uncharged)
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
        logged_requests.user_id,
        uncharged.currency,
        logged_requests.ts,
        logged_requests.request_id,
        uncharged.expected,
        logged_requests.model,
        logged_requests.source_id,
        logged_requests.line
    FROM logged_requests
    INNER JOIN uncharged ON logged_requests.request_id = uncharged.request_id
    CROSS JOIN covered
    INNER JOIN ledger_hours ON date_trunc('hour', logged_requests.ts) = ledger_hours.hour
    WHERE
        logged_requests.input_tokens + logged_requests.output_tokens > 0
        AND logged_requests.ts >= covered.from_ts
        AND logged_requests.ts <= covered.to_ts
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
