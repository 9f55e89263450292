-- title: Unbilled requests
-- description: A row is a successful request with tokens and no charge: revenue
--   leak, not a user credit. Only inside the time both the request log and the
--   ledger cover (and not in an hour where the ledger has no rows at all). The
--   amount is the expected charge in the user's currency (that of the user's
--   latest ledger row; usd for a user without one).
-- severity: low
WITH uncharged AS (
    SELECT *
    FROM requests
    WHERE status < 400
      AND input_tokens + output_tokens > 0
      AND request_id NOT IN (
          SELECT request_id FROM ledger WHERE kind = 'charge' AND request_id IS NOT NULL)
),
ledger_hours AS (
    SELECT DISTINCT date_trunc('hour', ts) AS hour FROM ledger
),
covered AS (
    SELECT greatest(r.first_ts, l.first_ts) AS from_ts, least(r.last_ts, l.last_ts) AS to_ts
    FROM (SELECT min(ts) AS first_ts, max(ts) AS last_ts FROM requests) AS r
    CROSS JOIN (SELECT min(ts) AS first_ts, max(ts) AS last_ts FROM ledger) AS l
),
unbilled AS (
    SELECT r.*, coalesce(uc.currency, 'usd') AS currency
    FROM uncharged AS r
    CROSS JOIN covered AS c
    JOIN ledger_hours AS lh ON lh.hour = date_trunc('hour', r.ts)
    LEFT JOIN user_currency AS uc ON uc.user_id = r.user_id
    WHERE r.ts >= c.from_ts AND r.ts <= c.to_ts
)
SELECT 'unbilled_requests' AS detector, u.user_id, u.currency, u.ts, u.request_id,
       CAST(NULL AS VARCHAR) AS entry_id,
       ROUND((CAST(u.input_tokens - u.cached_tokens AS DECIMAL(38,6)) * p.input_per_mtok
              + CAST(u.cached_tokens AS DECIMAL(38,6)) * p.cached_per_mtok
              + CAST(u.output_tokens AS DECIMAL(38,6)) * p.output_per_mtok)
             * CAST(0.000001 AS DECIMAL(7,6)), 6) AS amount,
       'no charge for ' || coalesce(u.model, 'unknown model') AS detail,
       u.source_id, u.line
FROM unbilled AS u
LEFT JOIN price_intervals AS p
    ON p.model = u.model AND p.currency = u.currency
    AND u.ts >= p.effective_from AND u.ts < p.effective_to
WHERE ($since IS NULL OR u.ts >= $since)
  AND ($until IS NULL OR u.ts < $until)
ORDER BY u.user_id, u.currency, u.ts, u.request_id
