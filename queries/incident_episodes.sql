-- title: Incident episodes
-- description: The episodes of each fault: its erroneous rows (duplicate and
--   failed-request charges, overbilling, charges under a false-positive penalty,
--   false-positive abuse actions) split where two consecutive rows are more than
--   gap_hours apart; ranked largest first (most users affected, then most rows).
--   The first episode names the incident.
-- severity: info
-- findings: no
-- uses: findings
-- param: gap_hours INTEGER 2  hours between two erroneous rows that start a new episode
WITH erroneous AS (
    SELECT
        CASE
            WHEN detector IN ('billing_mismatch', 'abuse_false_positives')
                THEN detector || ':' || detail
            ELSE detector
        END AS fault,
        user_id,
        ts,
        -- the row's own id: the ledger entry, else the request, else the user
        coalesce(entry_id, request_id, user_id) AS row_key
    FROM findings
    WHERE
        ts IS NOT NULL
        AND ($since IS NULL OR ts >= $since)
        AND ($until IS NULL OR ts < $until)
        AND (
            detector IN ('duplicate_charges', 'abuse_penalty_charges')
            OR (
                detector = 'billing_mismatch' AND detail IN ('charged_failed_request', 'overbilled')
            )
            OR (detector = 'abuse_false_positives' AND detail = 'false_positive')
        )
),

with_previous AS (
    SELECT
        fault, user_id, ts, row_key,
        lag(ts) OVER (PARTITION BY fault ORDER BY ts, row_key) AS previous_ts
    FROM erroneous
),

numbered AS (
    SELECT
        fault, user_id, ts, row_key,
        sum(
            CASE
                WHEN
                    previous_ts IS NULL
                    OR ts > previous_ts + CAST($gap_hours AS INTEGER) * INTERVAL '1' HOUR
                    THEN 1
                ELSE 0
            END
        ) OVER (
            PARTITION BY fault ORDER BY ts, row_key ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
        ) AS episode
    FROM with_previous
),

first_rows AS (
    SELECT fault, episode, row_key AS first_row_key
    FROM (
        SELECT
            fault, episode, row_key,
            row_number() OVER (PARTITION BY fault, episode ORDER BY ts, row_key) AS row_position
        FROM numbered
    ) AS positioned
    WHERE row_position = 1
),

episodes AS (
    SELECT
        fault,
        episode,
        count(DISTINCT user_id) AS users_affected,
        count(*) AS row_count,
        min(ts) AS episode_start,
        max(ts) AS episode_end
    FROM numbered
    GROUP BY fault, episode
)

SELECT
    episodes.fault,
    episodes.episode,
    episodes.users_affected,
    episodes.row_count,
    episodes.episode_start,
    episodes.episode_end,
    first_rows.first_row_key
FROM episodes
INNER JOIN first_rows ON episodes.fault = first_rows.fault AND episodes.episode = first_rows.episode
ORDER BY
    episodes.users_affected DESC, episodes.row_count DESC, episodes.episode_start ASC,
    episodes.fault ASC, episodes.episode ASC
