-- title: Balance chain breaks
-- description: A row is a ledger row whose recorded balance_after disagrees with the
--   replay by a different amount than the row before it did (per user and
--   currency, in ledger order, resets excluded): the point where a write was lost,
--   doubled or reordered. The amount is the size of the new disagreement.
-- severity: medium
WITH recorded AS (
    SELECT user_id, currency, ts, entry_id, request_id, seg, recorded_balance, balance,
           recorded_balance - balance AS drift, source_id, line
    FROM balance_timeline
    WHERE row_type = 'ledger' AND kind <> 'reset' AND recorded_balance IS NOT NULL
),
stepped AS (
    SELECT r.*,
           coalesce(lag(drift) OVER (
               PARTITION BY user_id, currency, seg ORDER BY ts, entry_id),
               CAST(0 AS DECIMAL(38,6))) AS previous_drift
    FROM recorded AS r
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
