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
WITH drifts AS (
    SELECT entry_id, recorded_balance - balance AS drift
    FROM balance_timeline
    WHERE row_type = 'ledger' AND recorded_balance IS NOT NULL
),
stepped AS (
    SELECT t.user_id, t.currency, t.ts, t.entry_id, t.request_id, t.recorded_balance, t.balance,
           t.recorded_balance - t.balance AS drift,
           coalesce(p.drift, CAST(0 AS DECIMAL(38,6))) AS previous_drift, t.source_id, t.line
    FROM balance_timeline AS t
    LEFT JOIN drifts AS p ON p.entry_id = t.previous_recorded_entry_id
    WHERE t.row_type = 'ledger' AND t.kind <> 'reset' AND t.recorded_balance IS NOT NULL
)
SELECT 'balance_chain_breaks' AS detector, user_id, currency, ts, request_id, entry_id,
       drift - previous_drift AS amount,
       'recorded ' || CAST(recorded_balance AS VARCHAR) || ', replayed '
           || CAST(balance AS VARCHAR) AS detail,
       recorded_balance, balance, source_id, line
FROM stepped
WHERE drift <> previous_drift
  AND ($since IS NULL OR ts >= $since)
  AND ($until IS NULL OR ts < $until)
ORDER BY user_id, currency, ts, entry_id
