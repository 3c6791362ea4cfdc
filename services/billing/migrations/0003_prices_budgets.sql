-- Prices per company with effective dates, monthly budgets, threshold webhooks.

-- The price version a usage row was priced with. NULL only for rows written before
-- the price book existed (priced with the environment's price of that time).
ALTER TABLE question_generation_usage ADD COLUMN price_id UUID;

-- The price book: versions are added, never changed or removed, so no row already
-- priced can be re-priced. company_id NULL: the default price (the environment's),
-- every company's price until it has its own version in force.
CREATE TABLE price_versions (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    price_id UUID NOT NULL UNIQUE,
    company_id UUID,
    price_per_10_questions NUMERIC(18, 4) NOT NULL CHECK (price_per_10_questions >= 0),
    profit_margin_percent NUMERIC(18, 4) NOT NULL CHECK (profit_margin_percent >= 0),
    effective_from TIMESTAMPTZ NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    created_by TEXT
);

-- A company's versions (and, under NULL, the default's), latest first.
CREATE INDEX price_versions_company
    ON price_versions (company_id, effective_from DESC, id DESC);

-- A company's budget: its limit per billing period, alert thresholds and webhook.
-- revision grows with each change, so consumers of BudgetChanged keep the latest.
CREATE TABLE budgets (
    company_id UUID PRIMARY KEY,
    monthly_limit NUMERIC(18, 4) CHECK (monthly_limit >= 0),
    thresholds INTEGER[] NOT NULL DEFAULT '{}',
    webhook_url TEXT,
    webhook_secret TEXT,
    revision BIGINT NOT NULL DEFAULT 1,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT budgets_secret_with_url CHECK ((webhook_url IS NULL) = (webhook_secret IS NULL))
);

-- One threshold webhook per (company, period, threshold), ever. The body is fixed
-- when enqueued (same eventId and bytes on every retry); attempts are leased by
-- moving next_attempt_at, so several billing processes share the work.
CREATE TABLE webhook_deliveries (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id UUID NOT NULL UNIQUE,
    company_id UUID NOT NULL,
    period TEXT NOT NULL,
    threshold INTEGER NOT NULL CHECK (threshold BETWEEN 1 AND 100),
    body TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL,
    give_up_at TIMESTAMPTZ NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    delivered_at TIMESTAMPTZ,
    UNIQUE (company_id, period, threshold)
);

CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';

-- Every attempt, for the company's deliveries list (newest first).
CREATE TABLE webhook_attempts (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id BIGINT NOT NULL REFERENCES webhook_deliveries (id),
    company_id UUID NOT NULL,
    attempt INTEGER NOT NULL,
    attempted_at TIMESTAMPTZ NOT NULL,
    url TEXT,
    status_code INTEGER,
    error TEXT,
    duration_ms INTEGER NOT NULL DEFAULT 0,
    outcome TEXT NOT NULL CHECK (outcome IN ('delivered', 'failed', 'refused'))
);

CREATE INDEX webhook_attempts_company ON webhook_attempts (company_id, id DESC);
