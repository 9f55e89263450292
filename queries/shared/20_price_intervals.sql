-- Each price row with the end of its validity: a price applies from its
-- effective_from until the next row for the same model and currency.
--
-- Two different prices for one (model, currency, effective_from) are a conflict
-- (listed by price_conflicts, never settled silently): the expected charge then
-- uses the lowest, ordered by input, cached, then output price per million
-- tokens, whatever the order the price lists were loaded in. So a charge above
-- either list's price is never taken as correct.
WITH prices AS (
    SELECT DISTINCT
        model,
        currency,
        effective_from,
        CAST(input_per_mtok AS DECIMAL(38, 6)) AS input_per_mtok,
        CAST(cached_per_mtok AS DECIMAL(38, 6)) AS cached_per_mtok,
        CAST(output_per_mtok AS DECIMAL(38, 6)) AS output_per_mtok
    FROM prices
),

ranked_prices AS (
    SELECT
        model,
        currency,
        effective_from,
        input_per_mtok,
        cached_per_mtok,
        output_per_mtok,
        row_number() OVER (
            PARTITION BY model, currency, effective_from
            ORDER BY input_per_mtok, cached_per_mtok, output_per_mtok
        ) AS price_rank
    FROM prices
),

used_prices AS (
    SELECT model, currency, effective_from, input_per_mtok, cached_per_mtok, output_per_mtok
    FROM ranked_prices
    WHERE price_rank = 1
)

SELECT
    model,
    currency,
    effective_from,
    coalesce(
        lead(effective_from) OVER (
            PARTITION BY model, currency
            ORDER BY effective_from
        ),
        TIMESTAMP '9999-12-31 00:00:00'
    ) AS effective_to,
    input_per_mtok,
    cached_per_mtok,
    output_per_mtok
FROM used_prices
