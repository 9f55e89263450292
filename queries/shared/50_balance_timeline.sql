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
WITH user_currencies AS (
    SELECT DISTINCT user_id, currency FROM ledger
),
stream AS (
    SELECT l.user_id, l.currency, l.ts, 1 AS ord, l.entry_id, '' AS probe_request_id,
           'ledger' AS row_type, l.kind, CAST(l.amount AS DECIMAL(38,6)) AS amount,
           CAST(l.balance_after AS DECIMAL(38,6)) AS recorded_balance,
           x.outstanding AS outstanding_after,
           l.request_id, l.source_id, l.line
    FROM ledger AS l
    LEFT JOIN excess_moves AS x ON x.entry_id = l.entry_id
    UNION ALL
    SELECT r.user_id, uc.currency, r.ts, 0 AS ord, '' AS entry_id, r.request_id,
           'rejection', CAST(NULL AS VARCHAR), CAST(0 AS DECIMAL(38,6)),
           CAST(NULL AS DECIMAL(38,6)), CAST(NULL AS DECIMAL(38,6)),
           r.request_id, r.source_id, r.line
    FROM requests AS r
    JOIN user_currencies AS uc ON uc.user_id = r.user_id
    WHERE r.status = 429
    UNION ALL
    SELECT user_id, currency, ts, 0 AS ord, entry_id, '' AS probe_request_id,
           'topup', kind, CAST(amount AS DECIMAL(38,6)),
           CAST(NULL AS DECIMAL(38,6)), CAST(NULL AS DECIMAL(38,6)),
           request_id, source_id, line
    FROM ledger
    WHERE kind = 'topup'
),
-- one pass over the whole ledger in order: one running sum; the rest are
-- look-ups of the latest earlier row of a kind (cheap next to a running sum)
running AS (
    SELECT s.*,
           sum(CASE WHEN s.row_type = 'ledger' AND s.kind <> 'reset' THEN s.amount
                    ELSE CAST(0 AS DECIMAL(38,6)) END) OVER in_order AS amount_sum,
           last_value(CASE WHEN s.row_type = 'ledger' AND s.kind = 'reset' THEN s.entry_id END
                      IGNORE NULLS) OVER in_order AS reset_entry_id,
           last_value(s.outstanding_after IGNORE NULLS) OVER in_order AS outstanding_excess,
           last_value(CASE WHEN s.row_type = 'ledger' THEN s.ts END IGNORE NULLS)
               OVER in_order AS last_ledger_ts,
           last_value(CASE WHEN s.row_type = 'ledger' AND s.recorded_balance IS NOT NULL
                           THEN s.entry_id END IGNORE NULLS)
               OVER before_it AS previous_recorded_entry_id,
           first_value(CASE WHEN s.row_type = 'ledger'
                            THEN CASE WHEN s.kind <> 'reset' AND s.recorded_balance IS NOT NULL
                                      THEN s.recorded_balance - s.amount
                                      ELSE CAST(0 AS DECIMAL(38,6)) END
                       END IGNORE NULLS) OVER whole AS opening
    FROM stream AS s
    WINDOW in_order AS (
               PARTITION BY s.user_id, s.currency
               ORDER BY s.ts, s.ord, s.entry_id, s.probe_request_id
               ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW),
           before_it AS (
               PARTITION BY s.user_id, s.currency
               ORDER BY s.ts, s.ord, s.entry_id, s.probe_request_id
               ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING),
           whole AS (
               PARTITION BY s.user_id, s.currency
               ORDER BY s.ts, s.ord, s.entry_id, s.probe_request_id
               ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
),
-- after a reset, balance = its balance_after + the amounts since, that is
-- base + amount_sum with base = balance_after - amount_sum at the reset
reset_bases AS (
    SELECT entry_id, recorded_balance - amount_sum AS base
    FROM running
    WHERE row_type = 'ledger' AND kind = 'reset'
),
balanced AS (
    SELECT r.*,
           CASE WHEN r.reset_entry_id IS NULL THEN r.opening ELSE b.base END
               + r.amount_sum AS balance
    FROM running AS r
    LEFT JOIN reset_bases AS b ON b.entry_id = r.reset_entry_id
)
SELECT user_id, currency, ts, row_type, NULLIF(entry_id, '') AS entry_id, request_id, kind,
       amount, recorded_balance, balance,
       coalesce(outstanding_excess, CAST(0 AS DECIMAL(38,6))) AS outstanding_excess,
       balance + coalesce(outstanding_excess, CAST(0 AS DECIMAL(38,6))) AS cf_balance,
       reset_entry_id, previous_recorded_entry_id, last_ledger_ts, ord, probe_request_id,
       source_id, line
FROM balanced
