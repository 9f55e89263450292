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
--
-- row_type: 'ledger' (balance after the row), 'rejection' (a 429, in every
-- currency of the user; balance just before it) or 'topup' (balance just
-- before the top-up).
WITH gross_by_request AS (
    SELECT user_id, currency, request_id, sum(excess_gross) AS gross
    FROM charge_attribution
    WHERE excess_gross > 0
    GROUP BY user_id, currency, request_id
),
refund_rows AS (
    SELECT l.entry_id, CAST(l.amount AS DECIMAL(38,6)) AS amount, g.gross,
           coalesce(sum(CAST(l.amount AS DECIMAL(38,6))) OVER (
               PARTITION BY l.user_id, l.currency, l.request_id ORDER BY l.ts, l.entry_id
               ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING),
               CAST(0 AS DECIMAL(38,6))) AS refunded_before
    FROM ledger AS l
    JOIN gross_by_request AS g
        ON g.user_id = l.user_id AND g.currency = l.currency AND g.request_id = l.request_id
    WHERE l.kind = 'refund'
),
excess_deltas AS (
    SELECT entry_id, excess_gross AS delta FROM charge_attribution WHERE excess_gross > 0
    UNION ALL
    SELECT entry_id,
           -least(amount, greatest(gross - refunded_before, CAST(0 AS DECIMAL(38,6)))) AS delta
    FROM refund_rows
),
user_currencies AS (
    SELECT DISTINCT user_id, currency FROM ledger
),
stream AS (
    SELECT l.user_id, l.currency, l.ts, 1 AS ord, l.entry_id, '' AS probe_request_id,
           'ledger' AS row_type, l.kind, CAST(l.amount AS DECIMAL(38,6)) AS amount,
           CAST(l.balance_after AS DECIMAL(38,6)) AS recorded_balance,
           coalesce(d.delta, CAST(0 AS DECIMAL(38,6))) AS excess_delta,
           l.request_id, l.source_id, l.line
    FROM ledger AS l
    LEFT JOIN excess_deltas AS d ON d.entry_id = l.entry_id
    UNION ALL
    SELECT r.user_id, uc.currency, r.ts, 0 AS ord, '' AS entry_id, r.request_id,
           'rejection', CAST(NULL AS VARCHAR), CAST(0 AS DECIMAL(38,6)),
           CAST(NULL AS DECIMAL(38,6)), CAST(0 AS DECIMAL(38,6)),
           r.request_id, r.source_id, r.line
    FROM requests AS r
    JOIN user_currencies AS uc ON uc.user_id = r.user_id
    WHERE r.status = 429
    UNION ALL
    SELECT user_id, currency, ts, 0 AS ord, entry_id, '' AS probe_request_id,
           'topup', kind, CAST(amount AS DECIMAL(38,6)),
           CAST(NULL AS DECIMAL(38,6)), CAST(0 AS DECIMAL(38,6)),
           request_id, source_id, line
    FROM ledger
    WHERE kind = 'topup'
),
openings AS (
    SELECT user_id, currency,
           CASE WHEN kind <> 'reset' AND balance_after IS NOT NULL
                THEN CAST(balance_after AS DECIMAL(38,6)) - CAST(amount AS DECIMAL(38,6))
                ELSE CAST(0 AS DECIMAL(38,6)) END AS opening
    FROM (
        SELECT user_id, currency, kind, amount, balance_after,
               row_number() OVER (PARTITION BY user_id, currency ORDER BY ts, entry_id) AS rn
        FROM ledger
    ) AS firsts
    WHERE rn = 1
),
segmented AS (
    SELECT s.*,
           sum(CASE WHEN s.row_type = 'ledger' AND s.kind = 'reset' THEN 1 ELSE 0 END) OVER (
               PARTITION BY s.user_id, s.currency
               ORDER BY s.ts, s.ord, s.entry_id, s.probe_request_id
               ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS seg,
           max(CASE WHEN s.row_type = 'ledger' THEN s.ts END) OVER (
               PARTITION BY s.user_id, s.currency
               ORDER BY s.ts, s.ord, s.entry_id, s.probe_request_id
               ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS last_ledger_ts
    FROM stream AS s
),
replayed AS (
    SELECT g.*,
           CASE WHEN g.seg = 0 THEN o.opening
                ELSE max(CASE WHEN g.row_type = 'ledger' AND g.kind = 'reset'
                              THEN g.recorded_balance END)
                     OVER (PARTITION BY g.user_id, g.currency, g.seg)
           END
           + sum(CASE WHEN g.row_type = 'ledger' AND g.kind <> 'reset' THEN g.amount
                      ELSE CAST(0 AS DECIMAL(38,6)) END) OVER (
               PARTITION BY g.user_id, g.currency, g.seg
               ORDER BY g.ts, g.ord, g.entry_id, g.probe_request_id
               ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS balance,
           sum(g.excess_delta) OVER (
               PARTITION BY g.user_id, g.currency, g.seg
               ORDER BY g.ts, g.ord, g.entry_id, g.probe_request_id
               ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS outstanding_excess
    FROM segmented AS g
    JOIN openings AS o ON o.user_id = g.user_id AND o.currency = g.currency
)
SELECT user_id, currency, ts, row_type, NULLIF(entry_id, '') AS entry_id, request_id, kind,
       amount, recorded_balance, balance, outstanding_excess,
       balance + outstanding_excess AS cf_balance, seg, last_ledger_ts, ord,
       probe_request_id, source_id, line
FROM replayed
