-- Every abuse action except `clear`, with the interval it stood over and its
-- classification (DESIGN.md section 3, abuse_false_positives; docs/DECISIONS.md):
--   insufficient_history  the user's first request is less than 24 h before it
--   false_positive        the hour before it was no busier (requests and tokens)
--                         than 3x the user's busiest clock hour of the 7 days before
--   warranted             otherwise
WITH abuse_events AS (
    SELECT source_id, line, user_id, ts, action, rule, score, until, multiplier
    FROM abuse_events
),

requests AS (
    SELECT user_id, ts, input_tokens, output_tokens FROM requests
),

data_span AS (
    SELECT end_ts FROM data_span
),

actions AS (
    SELECT source_id, line, user_id, ts, action, rule, score, until, multiplier
    FROM abuse_events
    WHERE action <> 'clear'
),

clears AS (
    SELECT user_id, ts
    FROM abuse_events
    WHERE action = 'clear'
),

next_clear AS (
    SELECT
        actions.source_id,
        actions.line,
        min(clears.ts) AS clear_ts
    FROM actions
    LEFT JOIN clears ON actions.user_id = clears.user_id AND actions.ts < clears.ts
    GROUP BY actions.source_id, actions.line
),

-- only the requests of users that abuse actions name are ever looked at
user_requests AS (
    SELECT requests.user_id, requests.ts, requests.input_tokens, requests.output_tokens
    FROM requests
    WHERE requests.user_id IN (SELECT actions.user_id FROM actions)
),

first_request AS (
    SELECT
        user_id,
        min(ts) AS first_ts
    FROM user_requests
    GROUP BY user_id
),

last_hour AS (
    SELECT
        actions.source_id,
        actions.line,
        count(user_requests.ts) AS requests_1h,
        coalesce(sum(user_requests.input_tokens + user_requests.output_tokens), 0) AS tokens_1h
    FROM actions
    LEFT JOIN user_requests
        ON actions.user_id = user_requests.user_id
        AND user_requests.ts >= actions.ts - INTERVAL '1' HOUR
        AND actions.ts > user_requests.ts
    GROUP BY actions.source_id, actions.line
),

hourly AS (
    SELECT
        user_id,
        date_trunc('hour', ts) AS hour,
        count(*) AS requests,
        sum(input_tokens + output_tokens) AS tokens
    FROM user_requests
    GROUP BY user_id, date_trunc('hour', ts)
),

-- the busiest clock hour among those that end by the start of the last hour,
-- over the 7 days before it
baseline AS (
    SELECT
        actions.source_id,
        actions.line,
        coalesce(max(hourly.requests), 0) AS busiest_hour_requests,
        coalesce(max(hourly.tokens), 0) AS busiest_hour_tokens
    FROM actions
    LEFT JOIN hourly
        ON actions.user_id = hourly.user_id
        AND hourly.hour >= actions.ts - INTERVAL '1' HOUR - INTERVAL '7' DAY
        AND hourly.hour + INTERVAL '1' HOUR <= actions.ts - INTERVAL '1' HOUR
    GROUP BY actions.source_id, actions.line
)

SELECT
    actions.source_id,
    actions.line,
    actions.user_id,
    actions.ts,
    actions.action,
    actions.rule,
    actions.score,
    actions.multiplier,
    coalesce(actions.until, next_clear.clear_ts, data_span.end_ts) AS end_ts,
    first_request.first_ts AS first_request_ts,
    last_hour.requests_1h,
    last_hour.tokens_1h,
    baseline.busiest_hour_requests,
    baseline.busiest_hour_tokens,
    CASE
        WHEN
            first_request.first_ts IS NULL
            OR first_request.first_ts > actions.ts - INTERVAL '24' HOUR
            THEN 'insufficient_history'
        WHEN
            last_hour.requests_1h <= 3 * baseline.busiest_hour_requests
            AND last_hour.tokens_1h <= 3 * baseline.busiest_hour_tokens
            THEN 'false_positive'
        ELSE 'warranted'
    END AS classification
FROM actions
INNER JOIN next_clear ON actions.source_id = next_clear.source_id AND actions.line = next_clear.line
INNER JOIN last_hour ON actions.source_id = last_hour.source_id AND actions.line = last_hour.line
INNER JOIN baseline ON actions.source_id = baseline.source_id AND actions.line = baseline.line
LEFT JOIN first_request ON actions.user_id = first_request.user_id
CROSS JOIN data_span
