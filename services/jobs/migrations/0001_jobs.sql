-- Saved jobs. A draft becomes at most one job per company.
CREATE TABLE jobs (
    id UUID PRIMARY KEY,
    company_id UUID NOT NULL,
    title TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created_by TEXT,
    draft_job_id TEXT,
    details JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX jobs_company_draft ON jobs (company_id, draft_job_id)
    WHERE draft_job_id IS NOT NULL;

-- The company's jobs, newest first, for keyset pagination.
CREATE INDEX jobs_company_created ON jobs (company_id, created_at DESC, id DESC);
