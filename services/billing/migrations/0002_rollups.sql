-- The billing period of each usage row, and the rollups the reads add up instead of rows.
--
-- Every rollup is kept by the ledger's batch, in the transaction that writes (or moves)
-- the rows it sums (services/billing/rollups/), so a reader never sees one without the
-- other; `python -m services.billing.rollups.rebuild` recomputes them from the rows.
-- Sums: generations (rows), question_count, cost and the three token counts.

-- 'YYYY-MM': the month (UTC) of the event's occurredAt, or the period a late
-- generation was billed in. Existing rows are backfilled from created_at.
ALTER TABLE question_generation_usage ADD COLUMN period TEXT;
UPDATE question_generation_usage SET period = to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM');
ALTER TABLE question_generation_usage
    ALTER COLUMN period SET NOT NULL,
    ADD CONSTRAINT usage_period_is_a_month CHECK (period ~ '^[0-9]{4}-(0[1-9]|1[0-2])$');

-- An insert that names no period (the ledger always names one) gets its created_at's month.
CREATE FUNCTION usage_period_of_created_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.period := to_char(NEW.created_at AT TIME ZONE 'UTC', 'YYYY-MM');
    RETURN NEW;
END
$$;
CREATE TRIGGER usage_period_default BEFORE INSERT ON question_generation_usage
    FOR EACH ROW WHEN (NEW.period IS NULL) EXECUTE FUNCTION usage_period_of_created_at();

-- Per company and UTC day of created_at: the daily series and the whole days of a range.
-- draft_*: the part still held under drafts (moved out when a draft is reconciled).
CREATE TABLE rollup_days (
    company_id UUID NOT NULL,
    day DATE NOT NULL,
    generations BIGINT NOT NULL,
    question_count BIGINT NOT NULL,
    cost NUMERIC(18, 4) NOT NULL,
    prompt_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    total_tokens BIGINT NOT NULL,
    draft_generations BIGINT NOT NULL,
    draft_question_count BIGINT NOT NULL,
    draft_cost NUMERIC(18, 4) NOT NULL,
    draft_prompt_tokens BIGINT NOT NULL,
    draft_completion_tokens BIGINT NOT NULL,
    draft_total_tokens BIGINT NOT NULL,
    PRIMARY KEY (company_id, day)
);

-- Per company and billing period: statements and budgets. late_*: rows billed in this
-- period although generated in an earlier one that was already closed.
CREATE TABLE rollup_periods (
    company_id UUID NOT NULL,
    period TEXT NOT NULL,
    generations BIGINT NOT NULL,
    question_count BIGINT NOT NULL,
    cost NUMERIC(18, 4) NOT NULL,
    prompt_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    total_tokens BIGINT NOT NULL,
    draft_generations BIGINT NOT NULL,
    draft_question_count BIGINT NOT NULL,
    draft_cost NUMERIC(18, 4) NOT NULL,
    draft_prompt_tokens BIGINT NOT NULL,
    draft_completion_tokens BIGINT NOT NULL,
    draft_total_tokens BIGINT NOT NULL,
    late_generations BIGINT NOT NULL,
    late_question_count BIGINT NOT NULL,
    late_cost NUMERIC(18, 4) NOT NULL,
    PRIMARY KEY (company_id, period)
);

-- Per job, all time: the summary's job lines, a page at a time by cost. The first and last
-- use tell which jobs a range holds whole and which it cuts through.
CREATE TABLE rollup_jobs (
    company_id UUID NOT NULL,
    job_id UUID NOT NULL,
    generations BIGINT NOT NULL,
    question_count BIGINT NOT NULL,
    cost NUMERIC(18, 4) NOT NULL,
    prompt_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    total_tokens BIGINT NOT NULL,
    first_used_at TIMESTAMPTZ NOT NULL,
    last_used_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (company_id, job_id)
);
CREATE INDEX rollup_jobs_by_cost
    ON rollup_jobs (company_id, cost DESC, job_id) INCLUDE (first_used_at, last_used_at);
-- The jobs a range's start or end cuts through (used before and after it).
CREATE INDEX rollup_jobs_by_last_use ON rollup_jobs (company_id, last_used_at) INCLUDE (first_used_at);
CREATE INDEX rollup_jobs_by_first_use ON rollup_jobs (company_id, first_used_at) INCLUDE (last_used_at);

-- Per job and UTC day of created_at: the part of a job inside a range's whole days.
CREATE TABLE rollup_job_days (
    company_id UUID NOT NULL,
    job_id UUID NOT NULL,
    day DATE NOT NULL,
    generations BIGINT NOT NULL,
    question_count BIGINT NOT NULL,
    cost NUMERIC(18, 4) NOT NULL,
    prompt_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    total_tokens BIGINT NOT NULL,
    first_used_at TIMESTAMPTZ NOT NULL,
    last_used_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (company_id, job_id, day)
);

-- Per job and billing period: a statement's lines, a page at a time by cost.
CREATE TABLE rollup_job_periods (
    company_id UUID NOT NULL,
    period TEXT NOT NULL,
    job_id UUID NOT NULL,
    generations BIGINT NOT NULL,
    question_count BIGINT NOT NULL,
    cost NUMERIC(18, 4) NOT NULL,
    prompt_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    total_tokens BIGINT NOT NULL,
    PRIMARY KEY (company_id, period, job_id)
);
CREATE INDEX rollup_job_periods_by_cost ON rollup_job_periods (company_id, period, cost DESC, job_id);

-- Per open draft: the drafts list. A draft's row goes when the draft is reconciled (all
-- its usage rows move to the job at once).
CREATE TABLE rollup_drafts (
    company_id UUID NOT NULL,
    draft_job_id TEXT NOT NULL,
    generations BIGINT NOT NULL,
    question_count BIGINT NOT NULL,
    cost NUMERIC(18, 4) NOT NULL,
    prompt_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    total_tokens BIGINT NOT NULL,
    first_used_at TIMESTAMPTZ NOT NULL,
    last_used_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (company_id, draft_job_id)
);
-- The drafts list (oldest first use first; abandoned ones are the oldest), and a range's drafts.
CREATE INDEX rollup_drafts_by_first_use
    ON rollup_drafts (company_id, first_used_at, draft_job_id) INCLUDE (last_used_at);
CREATE INDEX rollup_drafts_by_last_use ON rollup_drafts (company_id, last_used_at) INCLUDE (first_used_at);

-- Existing rows: the rollups as the rebuild command would make them.
INSERT INTO rollup_days
SELECT company_id, (created_at AT TIME ZONE 'UTC')::date, count(*), sum(question_count),
       sum(cost), sum(prompt_tokens), sum(completion_tokens), sum(total_tokens),
       count(*) FILTER (WHERE draft_job_id IS NOT NULL),
       COALESCE(sum(question_count) FILTER (WHERE draft_job_id IS NOT NULL), 0),
       COALESCE(sum(cost) FILTER (WHERE draft_job_id IS NOT NULL), 0),
       COALESCE(sum(prompt_tokens) FILTER (WHERE draft_job_id IS NOT NULL), 0),
       COALESCE(sum(completion_tokens) FILTER (WHERE draft_job_id IS NOT NULL), 0),
       COALESCE(sum(total_tokens) FILTER (WHERE draft_job_id IS NOT NULL), 0)
FROM question_generation_usage GROUP BY 1, 2;

INSERT INTO rollup_periods
SELECT company_id, period, count(*), sum(question_count),
       sum(cost), sum(prompt_tokens), sum(completion_tokens), sum(total_tokens),
       count(*) FILTER (WHERE draft_job_id IS NOT NULL),
       COALESCE(sum(question_count) FILTER (WHERE draft_job_id IS NOT NULL), 0),
       COALESCE(sum(cost) FILTER (WHERE draft_job_id IS NOT NULL), 0),
       COALESCE(sum(prompt_tokens) FILTER (WHERE draft_job_id IS NOT NULL), 0),
       COALESCE(sum(completion_tokens) FILTER (WHERE draft_job_id IS NOT NULL), 0),
       COALESCE(sum(total_tokens) FILTER (WHERE draft_job_id IS NOT NULL), 0),
       0, 0, 0
FROM question_generation_usage GROUP BY 1, 2;

INSERT INTO rollup_jobs
SELECT company_id, job_id, count(*), sum(question_count), sum(cost), sum(prompt_tokens),
       sum(completion_tokens), sum(total_tokens), min(created_at), max(created_at)
FROM question_generation_usage WHERE job_id IS NOT NULL GROUP BY 1, 2;

INSERT INTO rollup_job_days
SELECT company_id, job_id, (created_at AT TIME ZONE 'UTC')::date, count(*), sum(question_count),
       sum(cost), sum(prompt_tokens), sum(completion_tokens), sum(total_tokens),
       min(created_at), max(created_at)
FROM question_generation_usage WHERE job_id IS NOT NULL GROUP BY 1, 2, 3;

INSERT INTO rollup_job_periods
SELECT company_id, period, job_id, count(*), sum(question_count), sum(cost), sum(prompt_tokens),
       sum(completion_tokens), sum(total_tokens)
FROM question_generation_usage WHERE job_id IS NOT NULL GROUP BY 1, 2, 3;

INSERT INTO rollup_drafts
SELECT company_id, draft_job_id, count(*), sum(question_count), sum(cost), sum(prompt_tokens),
       sum(completion_tokens), sum(total_tokens), min(created_at), max(created_at)
FROM question_generation_usage WHERE draft_job_id IS NOT NULL GROUP BY 1, 2;
