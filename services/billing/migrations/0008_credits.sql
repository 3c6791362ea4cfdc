-- Prepaid credits: grants, the credit ledger, each company's account, credits applied.

-- A company's credit account: its mode, its alert threshold, and its balance: what its
-- grants have left in all (kept in the transaction of every grant, draw, expiry and
-- void). revision grows with each change, so consumers of CreditsChanged keep the latest.
-- Its row is also the lock every writer of the company's credits takes first.
CREATE TABLE credit_accounts (
    company_id UUID PRIMARY KEY,
    mode TEXT NOT NULL DEFAULT 'none'
        CHECK (mode IN ('none', 'credit_then_invoice', 'credit_only')),
    low_balance_threshold NUMERIC(18, 4) CHECK (low_balance_threshold >= 0),
    balance NUMERIC(18, 4) NOT NULL DEFAULT 0,
    revision BIGINT NOT NULL DEFAULT 0,
    -- The low-balance webhook was sent and not re-armed since (by a grant lifting the
    -- balance to the threshold, or a new threshold); alerts counts those sent.
    low_balance_alerted BOOLEAN NOT NULL DEFAULT false,
    low_balance_alerts BIGINT NOT NULL DEFAULT 0,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT credit_balance_never_negative CHECK (balance >= 0)
);

-- A grant of credits. remaining is what it has left to draw: it only goes down (draws,
-- then its expiry or void take the rest), and never below zero.
CREATE TABLE credit_grants (
    grant_id UUID PRIMARY KEY,
    company_id UUID NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('purchased', 'promotional')),
    amount NUMERIC(18, 4) NOT NULL CHECK (amount > 0),
    remaining NUMERIC(18, 4) NOT NULL,
    priority INTEGER NOT NULL CHECK (priority BETWEEN 1 AND 50),
    effective_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ,
    reason TEXT NOT NULL CHECK (char_length(reason) BETWEEN 1 AND 500),
    created_by TEXT,
    created_at TIMESTAMPTZ NOT NULL,
    voided_at TIMESTAMPTZ,
    expired_at TIMESTAMPTZ,
    CONSTRAINT credit_grant_never_overdrawn CHECK (remaining >= 0 AND remaining <= amount),
    CONSTRAINT credit_grant_expires_after_it_starts CHECK (expires_at > effective_at)
);

-- A company's grants with something left, in burn-down order (the draws' read).
CREATE INDEX credit_grants_burn_down
    ON credit_grants (company_id, priority, expires_at NULLS LAST, effective_at, grant_id)
    WHERE remaining > 0;
-- A company's grants, newest first (the API's list).
CREATE INDEX credit_grants_of_company ON credit_grants (company_id, created_at DESC, grant_id DESC);
-- Grants that will expire with something left (the expiry worker's read).
CREATE INDEX credit_grants_due ON credit_grants (expires_at) WHERE remaining > 0;

-- The credit ledger: every grant, draw, expiry and void, positive, append-only.
-- grant_id has no foreign key: entries are written only by the transaction that holds the
-- grant's account lock and has just read or written the grant, and a per-row check would
-- cost every batch one lookup and lock per draw.
CREATE TABLE credit_entries (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    entry_id UUID NOT NULL UNIQUE,
    company_id UUID NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('grant', 'draw', 'expiry', 'void')),
    amount NUMERIC(18, 4) NOT NULL CHECK (amount > 0),
    grant_id UUID NOT NULL,
    usage_id UUID,
    period TEXT,
    at TIMESTAMPTZ NOT NULL,
    CONSTRAINT credit_draw_names_its_usage CHECK ((kind = 'draw') = (usage_id IS NOT NULL))
);
CREATE INDEX credit_entries_of_company ON credit_entries (company_id, id DESC);
-- A grant is granted, expires and is voided at most once; a usage row draws once per grant.
CREATE UNIQUE INDEX credit_entries_once_per_grant ON credit_entries (grant_id, kind)
    WHERE kind IN ('grant', 'expiry', 'void');
CREATE UNIQUE INDEX credit_entries_draw_once ON credit_entries (usage_id, grant_id)
    WHERE kind = 'draw';

CREATE TRIGGER credit_entries_append_only BEFORE UPDATE OR DELETE ON credit_entries
    FOR EACH ROW EXECUTE FUNCTION refuse_rewrite();
CREATE TRIGGER credit_entries_never_truncated BEFORE TRUNCATE ON credit_entries
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_rewrite();

-- Credits applied to each (company, period): the draws of the period's usage, kept in the
-- draws' transaction, so a statement (and a close) reads one row, not every draw.
CREATE TABLE credit_applied_periods (
    company_id UUID NOT NULL,
    period TEXT NOT NULL,
    applied NUMERIC(18, 4) NOT NULL CHECK (applied >= 0),
    PRIMARY KEY (company_id, period)
);

-- A closed statement keeps the credits applied as they stood at the close.
ALTER TABLE statements ADD COLUMN credits_applied NUMERIC(18, 4) NOT NULL DEFAULT 0;
