-- Draft ids in one spelling: an id that is a UUID, however a browser spelled it (any case,
-- in braces, `urn:uuid:`, with or without hyphens), lower-case and hyphenated; any other id
-- as it was (`DraftId` in contracts/events.py: the same rule, for every event read).
--
-- Ids used to be compared as sent, so usage generated under one spelling and a job saved
-- under another never met: the usage stayed an open draft for good. Here every stored
-- draft id takes the one spelling, drafts that differ only by spelling become one draft,
-- and the drafts whose job billing already knows move onto it, as its JobCreated would
-- have moved them. The rollups follow in the same transaction, so they stay equal to what
-- `python -m services.billing.rollups.rebuild --check` recomputes from the rows.
--
-- On a live ledger: the ledger's batches wait while this runs. It takes the usage table's
-- SHARE ROW EXCLUSIVE lock first (waiting for the batches already writing rows, which
-- commit; holding back the next ones before they write any), then the rollups' EXCLUSIVE
-- lock, as the rebuild does: a batch touches the rollups only after the usage table, so
-- none can hold a rollup this waits for. Readers never wait. It reads the draft rows (few:
-- a reconciled row leaves the partial index) and the known jobs made from a draft.

LOCK TABLE question_generation_usage IN SHARE ROW EXCLUSIVE MODE;
LOCK TABLE rollup_days, rollup_periods, rollup_jobs, rollup_job_days, rollup_job_periods,
    rollup_drafts IN EXCLUSIVE MODE;

CREATE FUNCTION canonical_draft_id(draft text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE
        WHEN draft ~* ('^(urn:uuid:)?('
            '\{[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\}|\{[0-9a-f]{32}\}|'
            '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32})$')
        THEN translate(regexp_replace(draft, '^urn:uuid:', '', 'i'), '{}-', '')::uuid::text
        ELSE draft
    END
$$;

-- 1. Known jobs: the draft each was made from. Two spellings of one draft may have made two
-- jobs of one company: the job already holding the canonical spelling keeps the draft, else
-- the oldest takes it (the jobs service's migration 0002 chooses alike, from the same jobs:
-- a job's created_at here is its JobCreated's occurredAt, its created_at there); the others
-- keep their spelling, which no new event spells any more.
CREATE TEMP TABLE respelled_jobs ON COMMIT DROP AS
SELECT job_id, company_id, created_at, canonical_draft_id(draft_job_id) AS canonical
FROM known_jobs
WHERE draft_job_id IS NOT NULL AND draft_job_id <> canonical_draft_id(draft_job_id);

UPDATE known_jobs AS k
SET draft_job_id = chosen.canonical
FROM (
    SELECT DISTINCT ON (r.company_id, r.canonical) r.job_id, r.canonical
    FROM respelled_jobs r
    WHERE NOT EXISTS (
        SELECT 1 FROM known_jobs held
        WHERE held.company_id = r.company_id AND held.draft_job_id = r.canonical
    )
    ORDER BY r.company_id, r.canonical, r.created_at, r.job_id
) AS chosen
WHERE k.job_id = chosen.job_id;

-- 2. Draft rows in the one spelling (drafts of two spellings are now one draft).
CREATE TEMP TABLE respelled_drafts ON COMMIT DROP AS
SELECT DISTINCT company_id, draft_job_id AS spelled, canonical_draft_id(draft_job_id) AS canonical
FROM question_generation_usage
WHERE draft_job_id IS NOT NULL AND draft_job_id <> canonical_draft_id(draft_job_id);

UPDATE question_generation_usage AS u
SET draft_job_id = r.canonical
FROM respelled_drafts r
WHERE u.company_id = r.company_id AND u.draft_job_id = r.spelled;

-- 3. Drafts whose job billing knows, of the same company, move onto it, as the ledger moves
-- them (ledger/store.py, ATTACH_DRAFTS): a job whose id is the draft's key first, then the
-- job made from that draft. A healthy ledger has no such draft: these are the ones that
-- waited for good because their job spelled the draft otherwise.
CREATE TEMP TABLE moved (
    company_id UUID,
    job_id UUID,
    draft_job_id TEXT,
    created_at TIMESTAMPTZ,
    period TEXT,
    question_count INTEGER,
    cost NUMERIC,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    total_tokens INTEGER
) ON COMMIT DROP;

WITH drafts AS (
    SELECT DISTINCT company_id, draft_job_id
    FROM question_generation_usage
    WHERE draft_job_id IS NOT NULL
),
homes AS (
    SELECT d.company_id, d.draft_job_id, COALESCE(
        (SELECT k.job_id FROM known_jobs k
         WHERE k.company_id = d.company_id
           AND k.job_id = CASE
               WHEN d.draft_job_id ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
               THEN d.draft_job_id::uuid
           END),
        (SELECT k.job_id FROM known_jobs k
         WHERE k.company_id = d.company_id AND k.draft_job_id = d.draft_job_id
         ORDER BY k.created_at, k.job_id
         LIMIT 1)
    ) AS job_id
    FROM drafts d
),
attached AS (
    UPDATE question_generation_usage AS u
    SET job_id = h.job_id, draft_job_id = NULL
    FROM homes h
    WHERE h.job_id IS NOT NULL
      AND u.company_id = h.company_id
      AND u.draft_job_id = h.draft_job_id
    RETURNING u.company_id, u.job_id, h.draft_job_id, u.created_at, u.period, u.question_count,
        u.cost, u.prompt_tokens, u.completion_tokens, u.total_tokens
)
INSERT INTO moved SELECT * FROM attached;

-- 4. The rollups of the rows moved: now on their jobs (all time, per day, per period), no
-- longer in the drafts' part of their day and period. Totals do not change.
INSERT INTO rollup_jobs AS t (
    company_id, job_id, generations, question_count, cost, prompt_tokens, completion_tokens,
    total_tokens, first_used_at, last_used_at
)
SELECT company_id, job_id, count(*), sum(question_count), sum(cost), sum(prompt_tokens),
    sum(completion_tokens), sum(total_tokens), min(created_at), max(created_at)
FROM moved GROUP BY company_id, job_id
ON CONFLICT (company_id, job_id) DO UPDATE SET
    generations = t.generations + EXCLUDED.generations,
    question_count = t.question_count + EXCLUDED.question_count,
    cost = t.cost + EXCLUDED.cost,
    prompt_tokens = t.prompt_tokens + EXCLUDED.prompt_tokens,
    completion_tokens = t.completion_tokens + EXCLUDED.completion_tokens,
    total_tokens = t.total_tokens + EXCLUDED.total_tokens,
    first_used_at = LEAST(t.first_used_at, EXCLUDED.first_used_at),
    last_used_at = GREATEST(t.last_used_at, EXCLUDED.last_used_at);

INSERT INTO rollup_job_days AS t (
    company_id, job_id, day, generations, question_count, cost, prompt_tokens,
    completion_tokens, total_tokens, first_used_at, last_used_at
)
SELECT company_id, job_id, (created_at AT TIME ZONE 'UTC')::date, count(*), sum(question_count),
    sum(cost), sum(prompt_tokens), sum(completion_tokens), sum(total_tokens), min(created_at),
    max(created_at)
FROM moved GROUP BY 1, 2, 3
ON CONFLICT (company_id, job_id, day) DO UPDATE SET
    generations = t.generations + EXCLUDED.generations,
    question_count = t.question_count + EXCLUDED.question_count,
    cost = t.cost + EXCLUDED.cost,
    prompt_tokens = t.prompt_tokens + EXCLUDED.prompt_tokens,
    completion_tokens = t.completion_tokens + EXCLUDED.completion_tokens,
    total_tokens = t.total_tokens + EXCLUDED.total_tokens,
    first_used_at = LEAST(t.first_used_at, EXCLUDED.first_used_at),
    last_used_at = GREATEST(t.last_used_at, EXCLUDED.last_used_at);

INSERT INTO rollup_job_periods AS t (
    company_id, period, job_id, generations, question_count, cost, prompt_tokens,
    completion_tokens, total_tokens
)
SELECT company_id, period, job_id, count(*), sum(question_count), sum(cost), sum(prompt_tokens),
    sum(completion_tokens), sum(total_tokens)
FROM moved GROUP BY 1, 2, 3
ON CONFLICT (company_id, period, job_id) DO UPDATE SET
    generations = t.generations + EXCLUDED.generations,
    question_count = t.question_count + EXCLUDED.question_count,
    cost = t.cost + EXCLUDED.cost,
    prompt_tokens = t.prompt_tokens + EXCLUDED.prompt_tokens,
    completion_tokens = t.completion_tokens + EXCLUDED.completion_tokens,
    total_tokens = t.total_tokens + EXCLUDED.total_tokens;

UPDATE rollup_days AS t
SET draft_generations = t.draft_generations - m.generations,
    draft_question_count = t.draft_question_count - m.question_count,
    draft_cost = t.draft_cost - m.cost,
    draft_prompt_tokens = t.draft_prompt_tokens - m.prompt_tokens,
    draft_completion_tokens = t.draft_completion_tokens - m.completion_tokens,
    draft_total_tokens = t.draft_total_tokens - m.total_tokens
FROM (
    SELECT company_id, (created_at AT TIME ZONE 'UTC')::date AS day, count(*) AS generations,
        sum(question_count) AS question_count, sum(cost) AS cost,
        sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens,
        sum(total_tokens) AS total_tokens
    FROM moved GROUP BY 1, 2
) AS m
WHERE t.company_id = m.company_id AND t.day = m.day;

UPDATE rollup_periods AS t
SET draft_generations = t.draft_generations - m.generations,
    draft_question_count = t.draft_question_count - m.question_count,
    draft_cost = t.draft_cost - m.cost,
    draft_prompt_tokens = t.draft_prompt_tokens - m.prompt_tokens,
    draft_completion_tokens = t.draft_completion_tokens - m.completion_tokens,
    draft_total_tokens = t.draft_total_tokens - m.total_tokens
FROM (
    SELECT company_id, period, count(*) AS generations, sum(question_count) AS question_count,
        sum(cost) AS cost, sum(prompt_tokens) AS prompt_tokens,
        sum(completion_tokens) AS completion_tokens, sum(total_tokens) AS total_tokens
    FROM moved GROUP BY 1, 2
) AS m
WHERE t.company_id = m.company_id AND t.period = m.period;

-- 5. The drafts' rollup, for every draft respelled (under its old spelling and its new one)
-- or moved: recomputed from the rows still held under it (none, for a draft moved).
CREATE TEMP TABLE touched_drafts ON COMMIT DROP AS
SELECT company_id, spelled AS draft_job_id FROM respelled_drafts
UNION
SELECT company_id, canonical FROM respelled_drafts
UNION
SELECT company_id, draft_job_id FROM moved;

DELETE FROM rollup_drafts AS t
USING touched_drafts d
WHERE t.company_id = d.company_id AND t.draft_job_id = d.draft_job_id;

INSERT INTO rollup_drafts (
    company_id, draft_job_id, generations, question_count, cost, prompt_tokens,
    completion_tokens, total_tokens, first_used_at, last_used_at
)
SELECT u.company_id, u.draft_job_id, count(*), sum(u.question_count), sum(u.cost),
    sum(u.prompt_tokens), sum(u.completion_tokens), sum(u.total_tokens), min(u.created_at),
    max(u.created_at)
FROM question_generation_usage u
JOIN touched_drafts d ON d.company_id = u.company_id AND d.draft_job_id = u.draft_job_id
GROUP BY u.company_id, u.draft_job_id;

DROP FUNCTION canonical_draft_id(text);
