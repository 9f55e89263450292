-- title: Spent banked resets
-- description: A row is a banked reset the user spent because of the fault: a ledger
--   reset with initiated_by = user that comes after a wrongful quota rejection (a
--   wrongful_rejections row with error_code usage_limit_reached or insufficient_quota)
--   of that user and currency since their previous reset, system or user. Each is a
--   banked reset to restore. request_id names the last such rejection before it.
-- severity: high
-- uses: wrongful_rejections
WITH resets AS (
    SELECT entry_id, user_id, currency, ts, initiated_by, source_id, line
    FROM ledger
    WHERE kind = 'reset'
),

-- the rows of wrongful_rejections: whatever rule makes a 429 wrongful is decided there, once
wrongful_rejection_rows AS (
    SELECT user_id, currency, ts, request_id FROM wrongful_rejections
),

requests AS (
    SELECT request_id, error_code FROM requests
),

wrongful_quota_rejections AS (
    SELECT
        wrongful_rejection_rows.user_id,
        wrongful_rejection_rows.currency,
        wrongful_rejection_rows.ts,
        wrongful_rejection_rows.request_id,
        requests.error_code
    FROM wrongful_rejection_rows
    INNER JOIN requests ON wrongful_rejection_rows.request_id = requests.request_id
    WHERE requests.error_code IN ('usage_limit_reached', 'insufficient_quota')
),

-- a segment runs from one reset of a user and currency to the next (any reset ends one)
reset_segments AS (
    SELECT
        entry_id,
        user_id,
        currency,
        ts,
        initiated_by,
        source_id,
        line,
        lag(ts) OVER (
            PARTITION BY user_id, currency
            ORDER BY ts, entry_id
        ) AS previous_reset_ts
    FROM resets
),

-- a 429 sees the ledger rows before its ts, so one at the reset's own ts was still
-- refused by the old window, and one at the previous reset's ts belongs to the one before
rejections_in_segment AS (
    SELECT
        reset_segments.entry_id,
        wrongful_quota_rejections.request_id,
        wrongful_quota_rejections.error_code,
        row_number() OVER (
            PARTITION BY reset_segments.entry_id
            ORDER BY wrongful_quota_rejections.ts DESC, wrongful_quota_rejections.request_id DESC
        ) AS latest_first,
        count(*) OVER (PARTITION BY reset_segments.entry_id) AS rejections
    FROM reset_segments
    INNER JOIN wrongful_quota_rejections
        ON reset_segments.user_id = wrongful_quota_rejections.user_id
        AND reset_segments.currency = wrongful_quota_rejections.currency
        AND reset_segments.ts >= wrongful_quota_rejections.ts
        AND (
            reset_segments.previous_reset_ts IS NULL
            OR reset_segments.previous_reset_ts < wrongful_quota_rejections.ts
        )
    WHERE reset_segments.initiated_by = 'user'
),

spent AS (
    SELECT
        reset_segments.user_id,
        reset_segments.currency,
        reset_segments.ts,
        rejections_in_segment.request_id,
        reset_segments.entry_id,
        reset_segments.source_id,
        reset_segments.line,
        'banked reset spent after ' || CAST(rejections_in_segment.rejections AS VARCHAR)
        || ' wrongful quota rejection(s) since the previous reset, the last '
        || rejections_in_segment.error_code AS detail
    FROM reset_segments
    INNER JOIN rejections_in_segment
        ON reset_segments.entry_id = rejections_in_segment.entry_id
        AND rejections_in_segment.latest_first = 1
)

SELECT
    'spent_banked_resets' AS detector,
    user_id,
    currency,
    ts,
    request_id,
    entry_id,
    CAST(NULL AS DECIMAL(38, 6)) AS amount,
    detail,
    source_id,
    line
FROM spent
WHERE
    ($since IS NULL OR ts >= $since)
    AND ($until IS NULL OR ts < $until)
ORDER BY user_id, currency, ts, entry_id
