-- The ledger: the original design's table, plus the event that made each row.
-- A draft row has job_id NULL and draft_job_id set; a reconciled row the reverse.
CREATE TABLE question_generation_usage (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    company_id UUID NOT NULL,
    job_id UUID,
    draft_job_id TEXT,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    total_tokens INTEGER NOT NULL DEFAULT 0,
    question_count INTEGER NOT NULL DEFAULT 0,
    cost DECIMAL(10, 4) NOT NULL DEFAULT 0.0000,
    model_used VARCHAR(50) DEFAULT 'gpt-4o',
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    -- Exactly once: one row per QuestionsGenerated, however often delivered.
    event_id UUID NOT NULL UNIQUE,
    recorded_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT usage_belongs_to_job_or_draft CHECK ((job_id IS NULL) <> (draft_job_id IS NULL))
);

-- Reconciliation looks drafts up by company and draft id.
CREATE INDEX usage_drafts ON question_generation_usage (company_id, draft_job_id)
    WHERE draft_job_id IS NOT NULL;
CREATE INDEX usage_jobs ON question_generation_usage (company_id, job_id)
    WHERE job_id IS NOT NULL;
-- Listing a company's usage, newest first.
CREATE INDEX usage_company_created ON question_generation_usage (company_id, created_at DESC, id DESC);

-- What billing learned from JobCreated: which job each draft became.
CREATE TABLE known_jobs (
    job_id UUID PRIMARY KEY,
    company_id UUID NOT NULL,
    draft_job_id TEXT,
    created_at TIMESTAMPTZ NOT NULL,
    event_id UUID NOT NULL
);

CREATE INDEX known_jobs_drafts ON known_jobs (company_id, draft_job_id)
    WHERE draft_job_id IS NOT NULL;
