-- title: Ledger conflicts
-- description: A row is a ledger row whose entry_id was already loaded with different
--   content. The first ingested row is the one used; this lists every later one
--   that differs, with the fields that differ.
-- severity: medium
WITH shadowed AS (
    SELECT * FROM ledger_all WHERE NOT canonical
),
kept AS (
    SELECT * FROM ledger WHERE entry_id IN (SELECT entry_id FROM shadowed)
),
others AS (
    SELECT a.*, k.ts AS kept_ts, k.user_id AS kept_user_id, k.currency AS kept_currency,
           k.source_id AS kept_source_id, k.line AS kept_line,
           concat_ws(', ',
               CASE WHEN a.ts IS DISTINCT FROM k.ts THEN 'ts' END,
               CASE WHEN a.user_id IS DISTINCT FROM k.user_id THEN 'user_id' END,
               CASE WHEN a.kind IS DISTINCT FROM k.kind THEN 'kind' END,
               CASE WHEN a.amount IS DISTINCT FROM k.amount THEN 'amount' END,
               CASE WHEN a.currency IS DISTINCT FROM k.currency THEN 'currency' END,
               CASE WHEN a.request_id IS DISTINCT FROM k.request_id THEN 'request_id' END,
               CASE WHEN a.idempotency_key IS DISTINCT FROM k.idempotency_key
                    THEN 'idempotency_key' END,
               CASE WHEN a.input_tokens IS DISTINCT FROM k.input_tokens
                      OR a.cached_tokens IS DISTINCT FROM k.cached_tokens
                      OR a.output_tokens IS DISTINCT FROM k.output_tokens THEN 'tokens' END,
               CASE WHEN a.balance_after IS DISTINCT FROM k.balance_after
                    THEN 'balance_after' END) AS differs
    FROM shadowed AS a
    JOIN kept AS k ON k.entry_id = a.entry_id
)
SELECT 'ledger_conflicts' AS detector, kept_user_id AS user_id, kept_currency AS currency,
       kept_ts AS ts, request_id, entry_id, CAST(NULL AS DECIMAL(38,6)) AS amount,
       'differs in ' || differs || ' from the row kept at source '
           || CAST(kept_source_id AS VARCHAR) || ' line ' || CAST(kept_line AS VARCHAR) AS detail,
       source_id, line
FROM others
WHERE differs <> ''
  AND ($since IS NULL OR kept_ts >= $since)
  AND ($until IS NULL OR kept_ts < $until)
ORDER BY user_id, currency, ts, entry_id, source_id, line
