-- Monthly statements: late usage, closed periods, frozen statements, adjustments.

-- A generation recorded after its own period was closed: billed in a later period (its
-- `period`), its `created_at` still the moment it was generated.
ALTER TABLE question_generation_usage ADD COLUMN late BOOLEAN NOT NULL DEFAULT false;

-- A period is open until it has a row here; closing writes the row and the statements
-- below in one transaction (see statements/store.py for the lock that orders it with the
-- ledger's writers).
CREATE TABLE closed_periods (
    period TEXT PRIMARY KEY CHECK (period ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'),
    closed_at TIMESTAMPTZ NOT NULL
);

-- What each company's statement said when its period closed, frozen: a company with
-- usage or adjustments in the period has a row; one with neither, none (all zero).
-- (Written only by the close, right after its closed_periods row: no foreign key to check
-- 10,000 times.)
CREATE TABLE statements (
    period TEXT NOT NULL,
    company_id UUID NOT NULL,
    generations BIGINT NOT NULL,
    question_count BIGINT NOT NULL,
    cost NUMERIC(18, 4) NOT NULL,
    draft_count BIGINT NOT NULL,
    draft_question_count BIGINT NOT NULL,
    draft_cost NUMERIC(18, 4) NOT NULL,
    late_count BIGINT NOT NULL,
    late_cost NUMERIC(18, 4) NOT NULL,
    adjustment_count BIGINT NOT NULL,
    adjustment_total NUMERIC(18, 4) NOT NULL,
    PRIMARY KEY (period, company_id)
);

-- Its lines, one per job, frozen with it; read a page at a time by cost, then job (one
-- index: a job has one line per statement, so this key is unique too).
CREATE TABLE statement_lines (
    period TEXT NOT NULL,
    company_id UUID NOT NULL,
    job_id UUID NOT NULL,
    question_count BIGINT NOT NULL,
    cost NUMERIC(18, 4) NOT NULL
);
CREATE UNIQUE INDEX statement_lines_by_cost
    ON statement_lines (period, company_id, cost DESC, job_id);

-- A period's drafts still waiting, per company: statements count them (draft rows are few:
-- a reconciled row leaves this partial index).
CREATE INDEX usage_drafts_by_period ON question_generation_usage (period, company_id, draft_job_id)
    WHERE draft_job_id IS NOT NULL;

-- The close reads every company's rollups of one period.
CREATE INDEX rollup_periods_of_period ON rollup_periods (period, company_id);
CREATE INDEX rollup_job_periods_of_period ON rollup_job_periods (period, company_id);

-- Corrections, as credit or debit notes: never an edit of a usage row.
CREATE TABLE adjustments (
    id UUID PRIMARY KEY,
    company_id UUID NOT NULL,
    period TEXT NOT NULL CHECK (period ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'),
    amount NUMERIC(12, 4) NOT NULL CHECK (amount <> 0),
    reason TEXT NOT NULL CHECK (char_length(reason) BETWEEN 1 AND 500),
    usage_id UUID,
    job_id UUID,
    created_by TEXT,
    created_at TIMESTAMPTZ NOT NULL
);
-- A company's adjustments of a period, in order; and every company's, for the close.
CREATE INDEX adjustments_of_company ON adjustments (company_id, period, created_at, id);
CREATE INDEX adjustments_of_period ON adjustments (period, company_id);

-- An audit trail and a frozen statement are written once: refuse any edit, even by hand.
CREATE FUNCTION refuse_rewrite() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is written once and never changed (correct with an adjustment)', TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER adjustments_append_only BEFORE UPDATE OR DELETE ON adjustments
    FOR EACH ROW EXECUTE FUNCTION refuse_rewrite();
CREATE TRIGGER adjustments_never_truncated BEFORE TRUNCATE ON adjustments
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_rewrite();
CREATE TRIGGER statements_frozen BEFORE UPDATE OR DELETE ON statements
    FOR EACH ROW EXECUTE FUNCTION refuse_rewrite();
CREATE TRIGGER statement_lines_frozen BEFORE UPDATE OR DELETE ON statement_lines
    FOR EACH ROW EXECUTE FUNCTION refuse_rewrite();
CREATE TRIGGER closed_periods_frozen BEFORE UPDATE OR DELETE ON closed_periods
    FOR EACH ROW EXECUTE FUNCTION refuse_rewrite();
