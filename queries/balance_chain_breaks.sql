-- title: Balance chain breaks
-- description: A row is a ledger row whose recorded balance_after disagrees with the
--   replay by a different amount than the row before it did (per user and
--   currency, in ledger order, resets excluded): the point where a write was lost,
--   doubled or reordered. The amount is the size of the new disagreement.
-- severity: medium
--
-- The drift of a row is recorded_balance - balance. The row before it is the latest
-- earlier ledger row with a recorded balance; when that is a reset its drift is 0
-- (a reset sets the balance to what it records), so each segment starts from 0.
WITH recorded_rows AS (
    SELECT
        user_id, currency, ts, entry_id, request_id, recorded_balance, balance,
        previous_recorded_entry_id, source_id, line
    FROM balance_timeline
    WHERE row_type = 'ledger' AND kind <> 'reset' AND recorded_balance IS NOT NULL
),

-- the drift of the rows that can be the row before one (resets included), of
-- those with drift only: a row left out gives drift 0 all the same, and so only
-- the few rows with drift are hashed, not the ledger
previous_rows AS (
    SELECT
        entry_id,
        recorded_balance - balance AS drift
    FROM balance_timeline
    WHERE row_type = 'ledger' AND recorded_balance IS NOT NULL AND recorded_balance <> balance
),

stepped AS (
    SELECT
        recorded_rows.user_id,
        recorded_rows.currency,
        recorded_rows.ts,
        recorded_rows.entry_id,
        recorded_rows.request_id,
        recorded_rows.recorded_balance,
        recorded_rows.balance,
        recorded_rows.recorded_balance - recorded_rows.balance AS drift,
        coalesce(previous_rows.drift, CAST(0 AS DECIMAL(38, 6))) AS previous_drift,
        recorded_rows.source_id,
        recorded_rows.line
    FROM recorded_rows
    LEFT JOIN previous_rows
        ON recorded_rows.previous_recorded_entry_id = previous_rows.entry_id
)

SELECT
    'balance_chain_breaks' AS detector,
    user_id,
    currency,
    ts,
    request_id,
    entry_id,
    drift - previous_drift AS amount,
    'recorded ' || CAST(recorded_balance AS VARCHAR) || ', replayed '
    || CAST(balance AS VARCHAR) AS detail,
    recorded_balance,
    balance,
    source_id,
    line
FROM stepped
WHERE
    drift <> previous_drift
    AND ($since IS NULL OR ts >= $since)
    AND ($until IS NULL OR ts < $until)
ORDER BY user_id, currency, ts, entry_id
