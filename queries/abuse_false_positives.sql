-- title: Abuse false positives
-- description: A row is an abuse action (other than clear) that the user's behaviour
--   did not warrant: false_positive when in the hour before it the user made no more
--   requests and used no more tokens than 3x their busiest clock hour of the 7 days
--   before; insufficient_history (for review) when the user's first request is less
--   than 24 h before it. Warranted actions are not listed. The currency is that of
--   the user's latest ledger row (none for a user without ledger rows).
-- severity: high
SELECT 'abuse_false_positives' AS detector, a.user_id, uc.currency, a.ts,
       CAST(NULL AS VARCHAR) AS request_id, CAST(NULL AS VARCHAR) AS entry_id,
       CAST(NULL AS DECIMAL(38,6)) AS amount, a.classification AS detail,
       a.action, a.rule, a.end_ts, a.requests_1h, a.tokens_1h, a.busiest_hour_requests,
       a.busiest_hour_tokens, a.source_id, a.line
FROM abuse_restrictions AS a
LEFT JOIN user_currency AS uc ON uc.user_id = a.user_id
WHERE a.classification IN ('false_positive', 'insufficient_history')
  AND ($since IS NULL OR a.ts >= $since)
  AND ($until IS NULL OR a.ts < $until)
ORDER BY a.user_id, a.ts, a.action, a.source_id, a.line
