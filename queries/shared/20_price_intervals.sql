-- Each price row with the end of its validity: a price applies from its
-- effective_from until the next row for the same model and currency.
WITH prices AS (
    SELECT DISTINCT
        model,
        currency,
        effective_from,
        CAST(input_per_mtok AS DECIMAL(38, 6)) AS input_per_mtok,
        CAST(cached_per_mtok AS DECIMAL(38, 6)) AS cached_per_mtok,
        CAST(output_per_mtok AS DECIMAL(38, 6)) AS output_per_mtok
    FROM prices
)

SELECT
    model,
    currency,
    effective_from,
    coalesce(
        lead(effective_from) OVER (
            PARTITION BY model, currency
            ORDER BY effective_from, input_per_mtok, cached_per_mtok, output_per_mtok
        ),
        TIMESTAMP '9999-12-31 00:00:00'
    ) AS effective_to,
    input_per_mtok,
    cached_per_mtok,
    output_per_mtok
FROM prices
