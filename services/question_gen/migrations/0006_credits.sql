-- Prepaid credits enforced before the LLM call (mode credit_only), from the accounts
-- billing publishes (billing.credits_changed.v1), with this service's own count of its
-- generations billing has not recorded yet.

-- Each company's credit account as billing last published it (the highest revision):
--   grants    what each grant has left and when it may be drawn (CreditLeft, as JSON);
--   unbilled  the cost of this service's generations, folded, that billing has not yet
--             named as recorded (a CreditsChanged's countedGenerations);
--   reserved  the worst-case cost of the requests waiting for the LLM.
-- The one row every credit reservation of the company locks. Room is what the grants
-- drawable now have left, less unbilled, the unfolded spends and reserved.
CREATE TABLE credit_accounts (
    company_id UUID PRIMARY KEY,
    revision BIGINT NOT NULL,
    mode TEXT NOT NULL,
    balance NUMERIC(18, 4) NOT NULL,
    grants JSONB NOT NULL,
    unbilled NUMERIC(18, 4) NOT NULL DEFAULT 0 CHECK (unbilled >= 0),
    reserved NUMERIC(18, 4) NOT NULL DEFAULT 0 CHECK (reserved >= 0)
);

-- One reservation per request of a company in credit_only waiting for the LLM; the same
-- id as its budget reservation, when it has one. Its generation settles it (in the
-- statement that writes the generation); a fold then takes it off `reserved`.
CREATE TABLE credit_reservations (
    id UUID PRIMARY KEY,
    company_id UUID NOT NULL,
    amount NUMERIC(18, 4) NOT NULL CHECK (amount >= 0),
    expires_at TIMESTAMPTZ NOT NULL,
    settled BOOLEAN NOT NULL DEFAULT false
);

CREATE INDEX credit_reservations_company ON credit_reservations (company_id);

-- Each generation of a company in a credit mode that billing has not named as recorded
-- yet, with its cost. Written with the generation; counted until billing's event names
-- it (then deleted): unfolded on its own, folded in `credit_accounts.unbilled`.
CREATE TABLE credit_spends (
    generation_id UUID PRIMARY KEY,
    company_id UUID NOT NULL,
    cost NUMERIC(18, 4) NOT NULL CHECK (cost >= 0),
    reservation_id UUID,
    folded BOOLEAN NOT NULL DEFAULT false
);

CREATE INDEX credit_spends_company ON credit_spends (company_id) INCLUDE (cost)
    WHERE NOT folded;
