-- What each request should cost (DESIGN.md section 2), in each currency it is
-- billed in: that of every charge naming it, or for a request nothing charged,
-- its user's currency (usd for a user without ledger rows). One row per request
-- and such currency, with the request's status and model and whether a charge
-- names it:
--
--   expected = ((input_tokens - cached_tokens) x input_per_mtok
--               + cached_tokens x cached_per_mtok + output_tokens x output_per_mtok)
--              / 1,000,000, rounded half-up to 6 decimals,
--
-- at the price in force at the request's ts; 0 for a failed request
-- (status >= 400), priced or not; NULL when no price applies.
WITH requests AS (
    SELECT request_id, user_id, ts, model, status, input_tokens, cached_tokens, output_tokens
    FROM requests
),

charges AS (
    SELECT request_id, currency
    FROM ledger
    WHERE kind = 'charge' AND request_id IS NOT NULL
),

user_currency AS (
    SELECT user_id, currency FROM user_currency
),

price_intervals AS (
    SELECT
        model, currency, effective_from, effective_to,
        input_per_mtok, cached_per_mtok, output_per_mtok
    FROM price_intervals
),

charge_currencies AS (
    SELECT DISTINCT request_id, currency FROM charges
),

billed_in AS (
    SELECT
        requests.request_id,
        coalesce(charge_currencies.currency, user_currency.currency, 'usd') AS currency,
        charge_currencies.request_id IS NOT NULL AS is_charged,
        requests.ts,
        requests.model,
        requests.status,
        requests.input_tokens,
        requests.cached_tokens,
        requests.output_tokens
    FROM requests
    LEFT JOIN charge_currencies ON requests.request_id = charge_currencies.request_id
    LEFT JOIN user_currency ON requests.user_id = user_currency.user_id
)

SELECT
    billed_in.request_id,
    billed_in.currency,
    billed_in.status,
    billed_in.model,
    billed_in.is_charged,
    CASE
        WHEN billed_in.status >= 400 THEN CAST(0 AS DECIMAL(38, 6))
        ELSE round(
            (
                CAST(billed_in.input_tokens - billed_in.cached_tokens AS DECIMAL(38, 6))
                * price_intervals.input_per_mtok
                + CAST(billed_in.cached_tokens AS DECIMAL(38, 6))
                * price_intervals.cached_per_mtok
                + CAST(billed_in.output_tokens AS DECIMAL(38, 6))
                * price_intervals.output_per_mtok
            ) * CAST(0.000001 AS DECIMAL(7, 6)),
            6
        )
    END AS expected
FROM billed_in
LEFT JOIN price_intervals
    ON billed_in.model = price_intervals.model
    AND billed_in.currency = price_intervals.currency
    AND billed_in.ts >= price_intervals.effective_from
    AND billed_in.ts < price_intervals.effective_to
