-- Every abuse action except `clear`, with the interval it stood over and its
-- classification (DESIGN.md section 3, abuse_false_positives; docs/DECISIONS.md):
--   insufficient_history  the user's first request is less than 24 h before it
--   false_positive        the hour before it was no busier (requests and tokens)
--                         than 3x the user's busiest clock hour of the 7 days before
--   warranted             otherwise
WITH actions AS (
    SELECT source_id, line, user_id, ts, action, rule, score, until, multiplier
    FROM abuse_events
    WHERE action <> 'clear'
),
clears AS (
    SELECT user_id, ts FROM abuse_events WHERE action = 'clear'
),
next_clear AS (
    SELECT a.source_id, a.line, min(c.ts) AS clear_ts
    FROM actions AS a
    LEFT JOIN clears AS c ON c.user_id = a.user_id AND c.ts > a.ts
    GROUP BY a.source_id, a.line
),
-- only the requests of users that abuse actions name are ever looked at
user_requests AS (
    SELECT r.user_id, r.ts, r.input_tokens, r.output_tokens
    FROM requests AS r
    WHERE r.user_id IN (SELECT user_id FROM actions)
),
first_request AS (
    SELECT user_id, min(ts) AS first_ts FROM user_requests GROUP BY user_id
),
last_hour AS (
    SELECT a.source_id, a.line,
           count(r.ts) AS requests_1h,
           coalesce(sum(r.input_tokens + r.output_tokens), 0) AS tokens_1h
    FROM actions AS a
    LEFT JOIN user_requests AS r
        ON r.user_id = a.user_id
        AND r.ts >= a.ts - INTERVAL '1' HOUR
        AND r.ts < a.ts
    GROUP BY a.source_id, a.line
),
hourly AS (
    SELECT user_id, date_trunc('hour', ts) AS hour,
           count(*) AS requests, sum(input_tokens + output_tokens) AS tokens
    FROM user_requests
    GROUP BY user_id, date_trunc('hour', ts)
),
baseline AS (
    SELECT a.source_id, a.line,
           coalesce(max(h.requests), 0) AS busiest_hour_requests,
           coalesce(max(h.tokens), 0) AS busiest_hour_tokens
    FROM actions AS a
    LEFT JOIN hourly AS h
        ON h.user_id = a.user_id
        AND h.hour >= a.ts - INTERVAL '1' HOUR - INTERVAL '7' DAY
        AND h.hour + INTERVAL '1' HOUR <= a.ts - INTERVAL '1' HOUR
    GROUP BY a.source_id, a.line
)
SELECT a.source_id, a.line, a.user_id, a.ts, a.action, a.rule, a.score, a.multiplier,
       coalesce(a.until, n.clear_ts, s.end_ts) AS end_ts,
       f.first_ts AS first_request_ts,
       l.requests_1h, l.tokens_1h, b.busiest_hour_requests, b.busiest_hour_tokens,
       CASE
           WHEN f.first_ts IS NULL OR f.first_ts > a.ts - INTERVAL '24' HOUR
               THEN 'insufficient_history'
           WHEN l.requests_1h <= 3 * b.busiest_hour_requests
                AND l.tokens_1h <= 3 * b.busiest_hour_tokens
               THEN 'false_positive'
           ELSE 'warranted'
       END AS classification
FROM actions AS a
JOIN next_clear AS n ON n.source_id = a.source_id AND n.line = a.line
JOIN last_hour AS l ON l.source_id = a.source_id AND l.line = a.line
JOIN baseline AS b ON b.source_id = a.source_id AND b.line = a.line
LEFT JOIN first_request AS f ON f.user_id = a.user_id
CROSS JOIN data_span AS s
