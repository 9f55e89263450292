-- The ledger of every user and currency replayed in (ts, entry_id) order, with
-- the counterfactual balance beside the real one, plus a probe row for each
-- 429 and each top-up that sees the balance just before its timestamp
-- (DESIGN.md section 3: "balance at t" = the rows with ts < t).
--
--   balance             replayed: a reset sets it to its balance_after, any other
--                       row adds its amount; before the first row it is 0, or
--                       balance_after - amount of that first row
--   outstanding_excess  excess (duplicate, failed request, false-positive
--                       penalty, overbilled) charged since the last reset, less
--                       the refunds of that excess since then
--   cf_balance          balance + outstanding_excess: what the user would have
--   reset_entry_id      the latest reset at or before the row (NULL before the
--                       first): the segment the row belongs to
--   previous_recorded_entry_id  the latest earlier ledger row with a recorded
--                       balance_after (resets included)
--
-- row_type: 'ledger' (balance after the row), 'rejection' (a 429, in every
-- currency of the user; balance just before it) or 'topup' (balance just
-- before the top-up).
--
-- The amounts are replayed as the ledger holds them (DECIMAL(18, 6)); only the
-- sums and the output are DECIMAL(38, 6): narrower rows to sort and spill.
WITH ledger_rows AS (
    SELECT
        entry_id, ts, user_id, kind, amount, currency,
        request_id, balance_after, source_id, line
    FROM ledger
),

topups AS (
    SELECT
        entry_id, ts, user_id, kind, amount, currency,
        request_id, source_id, line
    FROM ledger
    WHERE kind = 'topup'
),

user_currencies AS (
    SELECT DISTINCT user_id, currency FROM ledger
),

rejections AS (
    SELECT request_id, ts, user_id, source_id, line
    FROM requests
    WHERE status = 429
),

excess_moves AS (
    SELECT entry_id, outstanding FROM excess_moves
),

-- the ledger rows, each 429 in every currency of its user, and the top-ups again
-- as probes; a probe sorts before the ledger rows of its ts (ord 0)
stream AS (
    SELECT
        ledger_rows.user_id,
        ledger_rows.currency,
        ledger_rows.ts,
        1 AS ord,
        ledger_rows.entry_id,
        '' AS probe_request_id,
        'ledger' AS row_type,
        ledger_rows.kind,
        ledger_rows.amount,
        ledger_rows.balance_after AS recorded_balance,
        excess_moves.outstanding AS outstanding_after,
        ledger_rows.request_id,
        ledger_rows.source_id,
        ledger_rows.line
    FROM ledger_rows
    LEFT JOIN excess_moves ON ledger_rows.entry_id = excess_moves.entry_id
    UNION ALL
    SELECT
        rejections.user_id,
        user_currencies.currency,
        rejections.ts,
        0 AS ord,
        '' AS entry_id,
        rejections.request_id AS probe_request_id,
        'rejection' AS row_type,
        CAST(NULL AS VARCHAR) AS kind,
        CAST(0 AS DECIMAL(18, 6)) AS amount,
        CAST(NULL AS DECIMAL(18, 6)) AS recorded_balance,
        CAST(NULL AS DECIMAL(38, 6)) AS outstanding_after,
        rejections.request_id,
        rejections.source_id,
        rejections.line
    FROM rejections
    INNER JOIN user_currencies ON rejections.user_id = user_currencies.user_id
    UNION ALL
    SELECT
        user_id,
        currency,
        ts,
        0 AS ord,
        entry_id,
        '' AS probe_request_id,
        'topup' AS row_type,
        kind,
        amount,
        CAST(NULL AS DECIMAL(18, 6)) AS recorded_balance,
        CAST(NULL AS DECIMAL(38, 6)) AS outstanding_after,
        request_id,
        source_id,
        line
    FROM topups
),

-- one pass over the whole ledger in order: one running sum; the rest are
-- look-ups of the latest earlier row of a kind (cheap next to a running sum)
running AS (
    SELECT
        user_id,
        currency,
        ts,
        ord,
        entry_id,
        probe_request_id,
        row_type,
        kind,
        amount,
        recorded_balance,
        request_id,
        source_id,
        line,
        sum(CASE
            WHEN row_type = 'ledger' AND kind <> 'reset' THEN amount
            ELSE CAST(0 AS DECIMAL(18, 6))
        END) OVER in_order AS amount_sum,
        last_value(
            CASE WHEN row_type = 'ledger' AND kind = 'reset' THEN entry_id END IGNORE NULLS
        ) OVER in_order AS reset_entry_id,
        last_value(outstanding_after IGNORE NULLS) OVER in_order AS outstanding_excess,
        last_value(CASE WHEN row_type = 'ledger' THEN ts END IGNORE NULLS)
            OVER in_order AS last_ledger_ts,
        last_value(
            CASE
                WHEN row_type = 'ledger' AND recorded_balance IS NOT NULL THEN entry_id
            END IGNORE NULLS
        ) OVER before_it AS previous_recorded_entry_id,
        first_value(
            CASE
                WHEN row_type = 'ledger'
                    THEN CASE
                        WHEN kind <> 'reset' AND recorded_balance IS NOT NULL
                            THEN recorded_balance - amount
                        ELSE CAST(0 AS DECIMAL(38, 6))
                    END
            END IGNORE NULLS
        ) OVER whole AS opening
    FROM stream
    WINDOW
        in_order AS (
            PARTITION BY user_id, currency
            ORDER BY ts, ord, entry_id, probe_request_id
            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
        ),
        before_it AS (
            PARTITION BY user_id, currency
            ORDER BY ts, ord, entry_id, probe_request_id
            ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
        ),
        whole AS (
            PARTITION BY user_id, currency
            ORDER BY ts, ord, entry_id, probe_request_id
            ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING
        )
),

-- after a reset, balance = its balance_after + the amounts since, that is
-- base + amount_sum with base = balance_after - amount_sum at the reset, where
-- amount_sum at a reset is the sum of the amounts of the non-reset ledger rows
-- before it (probes add 0). Summed over the ledger of the users and currencies
-- with a reset only, so `running` is read once: streamed, never materialised
reset_streams AS (
    SELECT DISTINCT user_id, currency
    FROM ledger
    WHERE kind = 'reset'
),

reset_sums AS (
    SELECT
        ledger.entry_id,
        ledger.kind,
        ledger.balance_after,
        sum(CASE
            WHEN ledger.kind <> 'reset' THEN ledger.amount
            ELSE CAST(0 AS DECIMAL(18, 6))
        END) OVER (
            PARTITION BY ledger.user_id, ledger.currency
            ORDER BY ledger.ts, ledger.entry_id
            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
        ) AS amount_sum
    FROM ledger
    INNER JOIN reset_streams
        ON ledger.user_id = reset_streams.user_id
        AND ledger.currency = reset_streams.currency
),

reset_bases AS (
    SELECT
        entry_id,
        balance_after - amount_sum AS base
    FROM reset_sums
    WHERE kind = 'reset'
),

balanced AS (
    SELECT
        running.user_id,
        running.currency,
        running.ts,
        running.row_type,
        running.entry_id,
        running.request_id,
        running.kind,
        running.amount,
        running.recorded_balance,
        running.outstanding_excess,
        running.reset_entry_id,
        running.previous_recorded_entry_id,
        running.last_ledger_ts,
        running.ord,
        running.probe_request_id,
        running.source_id,
        running.line,
        CASE
            WHEN running.reset_entry_id IS NULL THEN running.opening
            ELSE reset_bases.base
        END + running.amount_sum AS balance
    FROM running
    LEFT JOIN reset_bases ON running.reset_entry_id = reset_bases.entry_id
)

SELECT
    user_id,
    currency,
    ts,
    row_type,
    nullif(entry_id, '') AS entry_id,
    request_id,
    kind,
    CAST(amount AS DECIMAL(38, 6)) AS amount,
    CAST(recorded_balance AS DECIMAL(38, 6)) AS recorded_balance,
    balance,
    coalesce(outstanding_excess, CAST(0 AS DECIMAL(38, 6))) AS outstanding_excess,
    balance + coalesce(outstanding_excess, CAST(0 AS DECIMAL(38, 6))) AS cf_balance,
    reset_entry_id,
    previous_recorded_entry_id,
    last_ledger_ts,
    ord,
    probe_request_id,
    source_id,
    line
FROM balanced
