-- title: Ledger conflicts
-- description: A row is a ledger row whose entry_id was already loaded with different
--   content. The first ingested row is the one used; this lists every later one
--   that differs, with the fields that differ.
-- severity: medium
WITH ledger AS (
    SELECT
        entry_id, ts, user_id, kind, amount, currency, request_id, idempotency_key,
        input_tokens, cached_tokens, output_tokens, balance_after, source_id, line
    FROM ledger
),

-- the rows of an entry_id loaded before with other content are not canonical
shadowed AS (
    SELECT
        entry_id, ts, user_id, kind, amount, currency, request_id, idempotency_key,
        input_tokens, cached_tokens, output_tokens, balance_after, source_id, line
    FROM ledger_all
    WHERE NOT canonical
),

kept AS (
    SELECT
        ledger.entry_id,
        ledger.ts,
        ledger.user_id,
        ledger.kind,
        ledger.amount,
        ledger.currency,
        ledger.request_id,
        ledger.idempotency_key,
        ledger.input_tokens,
        ledger.cached_tokens,
        ledger.output_tokens,
        ledger.balance_after,
        ledger.source_id,
        ledger.line
    FROM ledger
    WHERE ledger.entry_id IN (SELECT shadowed.entry_id FROM shadowed)
),

compared AS (
    SELECT
        shadowed.entry_id,
        shadowed.request_id,
        shadowed.source_id,
        shadowed.line,
        kept.ts AS kept_ts,
        kept.user_id AS kept_user_id,
        kept.currency AS kept_currency,
        kept.source_id AS kept_source_id,
        kept.line AS kept_line,
        concat_ws(
            ', ',
            CASE WHEN shadowed.ts IS DISTINCT FROM kept.ts THEN 'ts' END,
            CASE WHEN shadowed.user_id IS DISTINCT FROM kept.user_id THEN 'user_id' END,
            CASE WHEN shadowed.kind IS DISTINCT FROM kept.kind THEN 'kind' END,
            CASE WHEN shadowed.amount IS DISTINCT FROM kept.amount THEN 'amount' END,
            CASE WHEN shadowed.currency IS DISTINCT FROM kept.currency THEN 'currency' END,
            CASE
                WHEN shadowed.request_id IS DISTINCT FROM kept.request_id THEN 'request_id'
            END,
            CASE
                WHEN shadowed.idempotency_key IS DISTINCT FROM kept.idempotency_key
                    THEN 'idempotency_key'
            END,
            CASE
                WHEN
                    shadowed.input_tokens IS DISTINCT FROM kept.input_tokens
                    OR shadowed.cached_tokens IS DISTINCT FROM kept.cached_tokens
                    OR shadowed.output_tokens IS DISTINCT FROM kept.output_tokens
                    THEN 'tokens'
            END,
            CASE
                WHEN shadowed.balance_after IS DISTINCT FROM kept.balance_after
                    THEN 'balance_after'
            END
        ) AS differs
    -- kept first: DuckDB then hashes the few shadowed rows, not the ledger (the
    -- same rows either way; 2.0 CPU-s -> 0.55 at 10M rows)
    FROM kept
    INNER JOIN shadowed ON kept.entry_id = shadowed.entry_id
)

SELECT
    'ledger_conflicts' AS detector,
    kept_user_id AS user_id,
    kept_currency AS currency,
    kept_ts AS ts,
    request_id,
    entry_id,
    CAST(NULL AS DECIMAL(38, 6)) AS amount,
    'differs in ' || differs || ' from the row kept at source '
    || CAST(kept_source_id AS VARCHAR) || ' line ' || CAST(kept_line AS VARCHAR) AS detail,
    source_id,
    line
FROM compared
WHERE
    differs <> ''
    AND ($since IS NULL OR kept_ts >= $since)
    AND ($until IS NULL OR kept_ts < $until)
ORDER BY user_id, currency, ts, entry_id, source_id, line
