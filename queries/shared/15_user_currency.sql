-- Each user's currency: that of the user's latest ledger row. Used where a row
-- belongs to a user but not to a ledger currency (abuse actions, unbilled
-- requests, restricted minutes).
SELECT user_id, currency
FROM (
    SELECT user_id, currency,
           row_number() OVER (PARTITION BY user_id ORDER BY ts DESC, entry_id DESC) AS rn
    FROM ledger
) AS latest
WHERE rn = 1
