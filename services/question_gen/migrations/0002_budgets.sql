-- Budgets enforced before the LLM call, from the state billing publishes (its events).

-- Every price version billing has announced (billing.price_changed.v1), kept by priceId.
-- company_id NULL: the default price, every company's until it has its own in force.
-- announced_at (the event's occurredAt) orders two versions with one effective_from.
CREATE TABLE budget_prices (
    price_id UUID PRIMARY KEY,
    company_id UUID,
    price_per_10_questions NUMERIC(18, 4) NOT NULL,
    profit_margin_percent NUMERIC(18, 4) NOT NULL,
    effective_from TIMESTAMPTZ NOT NULL,
    announced_at TIMESTAMPTZ NOT NULL
);

CREATE INDEX budget_prices_company ON budget_prices (company_id, effective_from DESC);

-- Each company's monthly limit (billing.budget_changed.v1), the highest revision kept.
-- monthly_limit NULL: no limit, nothing reserved.
CREATE TABLE budget_limits (
    company_id UUID PRIMARY KEY,
    monthly_limit NUMERIC(18, 4),
    revision BIGINT NOT NULL
);

-- The counter of one company in one billing period ('YYYY-MM'), the row every request
-- of the period locks for its reservation:
--   settled   the cost of the generations this service recorded in the period;
--   billed    the highest total billing has reported for it (billing.spend_recorded.v1);
--   reserved  the worst-case cost of the requests waiting for the LLM.
-- Spent is the greater of settled and billed (billing stays the source of truth).
CREATE TABLE budget_periods (
    company_id UUID NOT NULL,
    period TEXT NOT NULL,
    settled NUMERIC(18, 4) NOT NULL DEFAULT 0,
    billed NUMERIC(18, 4) NOT NULL DEFAULT 0,
    reserved NUMERIC(18, 4) NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    PRIMARY KEY (company_id, period)
);

-- One reservation per request waiting for the LLM. The generation row settles it (it
-- names the reservation and carries its cost, in the one statement that writes the row
-- and its event); a fold then moves both into the period's counter: the worst case off
-- `reserved`, the cost onto `settled`. A request that died leaves its reservation
-- until it expires, and then it is released.
CREATE TABLE budget_reservations (
    id UUID PRIMARY KEY,
    company_id UUID NOT NULL,
    period TEXT NOT NULL,
    amount NUMERIC(18, 4) NOT NULL CHECK (amount >= 0),
    expires_at TIMESTAMPTZ NOT NULL
);

CREATE INDEX budget_reservations_period ON budget_reservations (company_id, period);

-- The reservation a generation settles, and its cost at the price of its occurredAt.
ALTER TABLE generations ADD COLUMN reservation_id UUID, ADD COLUMN cost NUMERIC(18, 4);

CREATE INDEX generations_reservation ON generations (reservation_id)
    WHERE reservation_id IS NOT NULL;
