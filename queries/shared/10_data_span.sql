-- The span of the data: where restrictions without an end stop, and the
-- window every detection can speak about.
SELECT min(ts) AS start_ts, max(ts) AS end_ts
FROM (
    SELECT ts FROM requests
    UNION ALL SELECT ts FROM ledger
    UNION ALL SELECT ts FROM abuse_events
) AS all_rows
