-- title: Abuse false positives
-- description: A row is an abuse action (other than clear) that the user's behaviour
--   did not warrant: false_positive when in the hour before it the user made no more
--   requests and used no more tokens than 3x their busiest clock hour of the 7 days
--   before; insufficient_history (for review) when the user's first request is less
--   than 24 h before it. Warranted actions are not listed. The currency is that of
--   the user's latest ledger row (none for a user without ledger rows).
-- severity: high
WITH abuse_restrictions AS (
    SELECT
        user_id, ts, action, rule, end_ts, classification, requests_1h, tokens_1h,
        busiest_hour_requests, busiest_hour_tokens, source_id, line
    FROM abuse_restrictions
),

user_currency AS (
    SELECT user_id, currency FROM user_currency
),

-- the actions not warranted, or made too early in the user's history to judge
unwarranted AS (
    SELECT
        user_id, ts, action, rule, end_ts, classification, requests_1h, tokens_1h,
        busiest_hour_requests, busiest_hour_tokens, source_id, line
    FROM abuse_restrictions
    WHERE
        classification IN ('false_positive', 'insufficient_history')
        AND ($since IS NULL OR ts >= $since)
        AND ($until IS NULL OR ts < $until)
)

SELECT
    'abuse_false_positives' AS detector,
    unwarranted.user_id,
    user_currency.currency,
    unwarranted.ts,
    CAST(NULL AS VARCHAR) AS request_id,
    CAST(NULL AS VARCHAR) AS entry_id,
    CAST(NULL AS DECIMAL(38, 6)) AS amount,
    unwarranted.classification AS detail,
    unwarranted.action,
    unwarranted.rule,
    unwarranted.end_ts,
    unwarranted.requests_1h,
    unwarranted.tokens_1h,
    unwarranted.busiest_hour_requests,
    unwarranted.busiest_hour_tokens,
    unwarranted.source_id,
    unwarranted.line
FROM unwarranted
LEFT JOIN user_currency ON unwarranted.user_id = user_currency.user_id
ORDER BY
    unwarranted.user_id,
    unwarranted.ts,
    unwarranted.action,
    unwarranted.source_id,
    unwarranted.line
