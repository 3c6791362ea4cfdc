-- The cost of goods: what each LLM call cost the operator, billed or not, and the margin.
-- (services/billing/costs/; docs/operations.md, "Cost of goods".)

-- The model price book. Versions are added, never changed or removed; unlike the
-- companies' prices, any effectiveFrom is allowed (the provider's price is the
-- operator's own figure and may be corrected), and the calls a version now covers
-- are re-priced (model_repricings). source and read_on: where a shipped price was read.
CREATE TABLE model_prices (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    model_price_id UUID NOT NULL UNIQUE,
    model TEXT NOT NULL CHECK (model <> ''),
    input_per_1m NUMERIC(18, 4) NOT NULL CHECK (input_per_1m >= 0),
    cached_input_per_1m NUMERIC(18, 4) NOT NULL CHECK (cached_input_per_1m >= 0),
    output_per_1m NUMERIC(18, 4) NOT NULL CHECK (output_per_1m >= 0),
    effective_from TIMESTAMPTZ NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    created_by TEXT,
    source TEXT,
    read_on DATE
);
CREATE INDEX model_prices_by_model ON model_prices (model, effective_from DESC, id DESC);

-- The shipped price lists already loaded: each is loaded once, at the first start.
CREATE TABLE model_price_seeds (
    name TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    read_on DATE NOT NULL,
    loaded_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);

-- Every LLM call, once per LlmCallFinished. provider_cost NULL: unpriced (no version of
-- its model in force at occurred_at), never 0. model_stem: the model without a dated
-- snapshot suffix, what re-pricing looks calls up by and margins group by.
CREATE TABLE llm_calls (
    event_id UUID PRIMARY KEY,
    company_id UUID NOT NULL,
    model TEXT NOT NULL,
    model_stem TEXT NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('billed', 'failed', 'timeout', 'cancelled')),
    generation_id UUID,
    prompt_tokens INTEGER NOT NULL CHECK (prompt_tokens >= 0),
    cached_prompt_tokens INTEGER NOT NULL CHECK (cached_prompt_tokens BETWEEN 0 AND prompt_tokens),
    completion_tokens INTEGER NOT NULL CHECK (completion_tokens >= 0),
    reasoning_tokens INTEGER NOT NULL
        CHECK (reasoning_tokens BETWEEN 0 AND completion_tokens),
    usage_source TEXT NOT NULL CHECK (usage_source IN ('provider', 'estimated')),
    occurred_at TIMESTAMPTZ NOT NULL,
    provider_cost NUMERIC(24, 8),
    model_price_id UUID,
    recorded_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT llm_calls_priced_by_a_version CHECK ((provider_cost IS NULL) = (model_price_id IS NULL))
);
-- Re-pricing walks a model's calls from a version's effectiveFrom on.
CREATE INDEX llm_calls_by_model ON llm_calls (model_stem, occurred_at, event_id);

-- A version's re-pricing: its model's calls from effective_from on, walked in bounded
-- rounds (one transaction each); after_at/after_event is where the last round stopped.
CREATE TABLE model_repricings (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    model_price_id UUID NOT NULL UNIQUE REFERENCES model_prices (model_price_id),
    model_stem TEXT NOT NULL,
    since TIMESTAMPTZ NOT NULL,
    after_at TIMESTAMPTZ,
    after_event UUID,
    scanned BIGINT NOT NULL DEFAULT 0,
    repriced BIGINT NOT NULL DEFAULT 0,
    created_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    finished_at TIMESTAMPTZ
);
CREATE INDEX model_repricings_pending ON model_repricings (id) WHERE finished_at IS NULL;

-- The margin rollups, kept in the transaction that writes (or re-prices) what they sum,
-- by the UTC day or month of occurredAt and the model's stem. revenue: the usage rows'
-- billed cost; provider_cost: the priced calls' (unbilled_*: those not billed).
-- Per company, day and model: what the other two agree with.
CREATE TABLE margin_days (
    company_id UUID NOT NULL,
    day DATE NOT NULL,
    model TEXT NOT NULL,
    generations BIGINT NOT NULL,
    revenue NUMERIC(18, 4) NOT NULL,
    calls BIGINT NOT NULL,
    unpriced_calls BIGINT NOT NULL,
    provider_cost NUMERIC(28, 8) NOT NULL,
    unbilled_calls BIGINT NOT NULL,
    unbilled_provider_cost NUMERIC(28, 8) NOT NULL,
    prompt_tokens BIGINT NOT NULL,
    cached_prompt_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    reasoning_tokens BIGINT NOT NULL,
    PRIMARY KEY (company_id, day, model)
);
-- The days at a range's edges when few companies have any: found by day, not by walking
-- every company's key.
CREATE INDEX margin_days_by_day ON margin_days (day);

-- Per company, month and model: a month by company is read in company order, a page
-- of companies at a time (the key leads with the company for that).
CREATE TABLE margin_periods (
    company_id UUID NOT NULL,
    period TEXT NOT NULL CHECK (period ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'),
    model TEXT NOT NULL,
    generations BIGINT NOT NULL,
    revenue NUMERIC(18, 4) NOT NULL,
    calls BIGINT NOT NULL,
    unpriced_calls BIGINT NOT NULL,
    provider_cost NUMERIC(28, 8) NOT NULL,
    unbilled_calls BIGINT NOT NULL,
    unbilled_provider_cost NUMERIC(28, 8) NOT NULL,
    prompt_tokens BIGINT NOT NULL,
    cached_prompt_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    reasoning_tokens BIGINT NOT NULL,
    PRIMARY KEY (company_id, period, model)
);

-- Per day and model, every company together: by model or by day without the companies.
CREATE TABLE margin_model_days (
    day DATE NOT NULL,
    model TEXT NOT NULL,
    generations BIGINT NOT NULL,
    revenue NUMERIC(18, 4) NOT NULL,
    calls BIGINT NOT NULL,
    unpriced_calls BIGINT NOT NULL,
    provider_cost NUMERIC(28, 8) NOT NULL,
    unbilled_calls BIGINT NOT NULL,
    unbilled_provider_cost NUMERIC(28, 8) NOT NULL,
    prompt_tokens BIGINT NOT NULL,
    cached_prompt_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    reasoning_tokens BIGINT NOT NULL,
    PRIMARY KEY (day, model)
);

-- The revenue already billed: the usage rows there are, as the check
-- (`python -m services.billing.costs.check`) recomputes it. The stem's pattern is
-- services/billing/costs/rules.py's SNAPSHOT_SUFFIX.
CREATE TEMP TABLE margin_backfill ON COMMIT DROP AS
SELECT company_id, (created_at AT TIME ZONE 'UTC')::date AS day,
       COALESCE(NULLIF(regexp_replace(COALESCE(model_used, ''),
           '-([0-9]{4}-[0-9]{2}-[0-9]{2}|[0-9]{4})$', ''), ''), COALESCE(model_used, ''))
           AS model,
       count(*) AS generations, sum(cost) AS revenue
FROM question_generation_usage GROUP BY 1, 2, 3;

INSERT INTO margin_days
SELECT company_id, day, model, generations, revenue, 0, 0, 0, 0, 0, 0, 0, 0, 0
FROM margin_backfill;

INSERT INTO margin_periods
SELECT company_id, to_char(day, 'YYYY-MM'), model, sum(generations), sum(revenue),
       0, 0, 0, 0, 0, 0, 0, 0, 0
FROM margin_backfill GROUP BY 1, 2, 3;

INSERT INTO margin_model_days
SELECT day, model, sum(generations), sum(revenue), 0, 0, 0, 0, 0, 0, 0, 0, 0
FROM margin_backfill GROUP BY 1, 2;
