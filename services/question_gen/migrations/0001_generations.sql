-- Every successful generation; its id is the eventId of its QuestionsGenerated.
CREATE TABLE generations (
    id UUID PRIMARY KEY,
    company_id UUID NOT NULL,
    job_id UUID,
    draft_job_id TEXT,
    question_count INTEGER NOT NULL CHECK (question_count > 0),
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    total_tokens INTEGER NOT NULL,
    model TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);

CREATE INDEX generations_company_created ON generations (company_id, created_at DESC);
