-- title: Price conflicts
-- description: A row is a price row that gives another price for a (model, currency,
--   effective_from) that already has one. Expected charges use the lowest of them
--   (by input, cached, then output price per million tokens); each other one is
--   listed here, with the price used, so the choice is never silent. Settle it by
--   fixing the price lists before paying credits.
-- severity: high
WITH prices AS (
    SELECT
        model,
        currency,
        effective_from,
        CAST(input_per_mtok AS DECIMAL(38, 6)) AS input_per_mtok,
        CAST(cached_per_mtok AS DECIMAL(38, 6)) AS cached_per_mtok,
        CAST(output_per_mtok AS DECIMAL(38, 6)) AS output_per_mtok,
        source_id,
        line
    FROM prices
),

price_intervals AS (
    SELECT
        model, currency, effective_from, effective_to,
        input_per_mtok, cached_per_mtok, output_per_mtok
    FROM price_intervals
),

-- the rows holding the price used, the first (by source and line) for its provenance
used_rows AS (
    SELECT
        prices.model,
        prices.currency,
        prices.effective_from,
        prices.source_id,
        prices.line,
        row_number() OVER (
            PARTITION BY prices.model, prices.currency, prices.effective_from
            ORDER BY prices.source_id, prices.line
        ) AS row_rank
    FROM prices
    INNER JOIN price_intervals
        ON prices.model = price_intervals.model
        AND prices.currency = price_intervals.currency
        AND prices.effective_from = price_intervals.effective_from
        AND prices.input_per_mtok = price_intervals.input_per_mtok
        AND prices.cached_per_mtok = price_intervals.cached_per_mtok
        AND prices.output_per_mtok = price_intervals.output_per_mtok
),

first_used_rows AS (
    SELECT model, currency, effective_from, source_id, line
    FROM used_rows
    WHERE row_rank = 1
),

conflicting AS (
    SELECT
        prices.model,
        prices.currency,
        prices.effective_from,
        price_intervals.effective_to,
        prices.source_id,
        prices.line,
        CAST(prices.input_per_mtok AS VARCHAR) || '/'
        || CAST(prices.cached_per_mtok AS VARCHAR) || '/'
        || CAST(prices.output_per_mtok AS VARCHAR) AS listed,
        CAST(price_intervals.input_per_mtok AS VARCHAR) || '/'
        || CAST(price_intervals.cached_per_mtok AS VARCHAR) || '/'
        || CAST(price_intervals.output_per_mtok AS VARCHAR) AS used,
        first_used_rows.source_id AS used_source_id,
        first_used_rows.line AS used_line
    FROM prices
    INNER JOIN price_intervals
        ON prices.model = price_intervals.model
        AND prices.currency = price_intervals.currency
        AND prices.effective_from = price_intervals.effective_from
    INNER JOIN first_used_rows
        ON prices.model = first_used_rows.model
        AND prices.currency = first_used_rows.currency
        AND prices.effective_from = first_used_rows.effective_from
    WHERE
        prices.input_per_mtok <> price_intervals.input_per_mtok
        OR prices.cached_per_mtok <> price_intervals.cached_per_mtok
        OR prices.output_per_mtok <> price_intervals.output_per_mtok
)

SELECT
    'price_conflicts' AS detector,
    CAST(NULL AS VARCHAR) AS user_id,
    currency,
    effective_from AS ts,
    CAST(NULL AS VARCHAR) AS request_id,
    CAST(NULL AS VARCHAR) AS entry_id,
    CAST(NULL AS DECIMAL(38, 6)) AS amount,
    'model ' || model || ': input/cached/output per Mtok ' || listed
    || ' conflicts with ' || used || ' (source '
    || CAST(used_source_id AS VARCHAR) || ' line ' || CAST(used_line AS VARCHAR)
    || '), which expected charges use' AS detail,
    model,
    source_id,
    line
FROM conflicting
WHERE
    ($since IS NULL OR effective_to > $since)
    AND ($until IS NULL OR effective_from < $until)
ORDER BY currency, ts, model, source_id, line
