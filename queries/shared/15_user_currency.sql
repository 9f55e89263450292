-- Each user's currency: that of the user's latest ledger row (by ts, then
-- entry_id). Used where a row belongs to a user but not to a ledger currency
-- (abuse actions, unbilled requests, restricted minutes).
WITH latest_ts AS (
    SELECT user_id, max(ts) AS ts FROM ledger GROUP BY user_id
),
latest_entry AS (
    SELECT l.user_id, max(l.entry_id) AS entry_id
    FROM ledger AS l
    JOIN latest_ts AS t ON t.user_id = l.user_id AND t.ts = l.ts
    GROUP BY l.user_id
)
SELECT e.user_id, l.currency
FROM latest_entry AS e
JOIN ledger AS l ON l.entry_id = e.entry_id
