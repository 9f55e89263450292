-- Each user's currency: that of the user's latest ledger row (by ts, then
-- entry_id). Used where a row belongs to a user but not to a ledger currency
-- (abuse actions, unbilled requests, restricted minutes).
WITH latest_ts AS (
    SELECT
        user_id,
        max(ts) AS ts
    FROM ledger
    GROUP BY user_id
),

-- the greatest entry_id among the rows at the latest ts breaks a tie
latest_entry AS (
    SELECT
        ledger.user_id,
        max(ledger.entry_id) AS entry_id
    FROM ledger
    INNER JOIN latest_ts
        ON ledger.user_id = latest_ts.user_id AND ledger.ts = latest_ts.ts
    GROUP BY ledger.user_id
)

SELECT
    latest_entry.user_id,
    ledger.currency
FROM latest_entry
INNER JOIN ledger ON latest_entry.entry_id = ledger.entry_id
