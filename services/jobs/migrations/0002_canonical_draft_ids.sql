-- Draft ids in one spelling: an id that is a UUID, however a browser spelled it (any case,
-- in braces, `urn:uuid:`, with or without hyphens), lower-case and hyphenated; any other id
-- as it was (`DraftId` in contracts/events.py: the same rule, for every new id).
--
-- One draft becomes at most one job per company, but spellings used to be told apart, so
-- two spellings of one draft may have made two jobs. Then the job already holding the
-- canonical spelling keeps the draft; if none does, the oldest takes it (created_at, then
-- id). The others keep the spelling they were saved with: they stay as they were, and a new
-- job from that draft is refused (409) naming the one that kept it. Billing's migration 0005
-- makes the same choice from the same jobs.
--
-- On a live service: new jobs wait while this runs (the table's SHARE ROW EXCLUSIVE lock,
-- so that none is saved under a spelling already being rewritten); reads never wait.

LOCK TABLE jobs IN SHARE ROW EXCLUSIVE MODE;

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

-- The jobs whose draft id is not canonical yet.
CREATE TEMP TABLE respelled_jobs ON COMMIT DROP AS
SELECT id, company_id, created_at, canonical_draft_id(draft_job_id) AS canonical
FROM jobs
WHERE draft_job_id IS NOT NULL AND draft_job_id <> canonical_draft_id(draft_job_id);

-- Per (company, draft), one of them takes the canonical spelling, unless a job has it already.
UPDATE jobs AS j
SET draft_job_id = chosen.canonical
FROM (
    SELECT DISTINCT ON (r.company_id, r.canonical) r.id, r.canonical
    FROM respelled_jobs r
    WHERE NOT EXISTS (
        SELECT 1 FROM jobs held
        WHERE held.company_id = r.company_id AND held.draft_job_id = r.canonical
    )
    ORDER BY r.company_id, r.canonical, r.created_at, r.id
) AS chosen
WHERE j.id = chosen.id;

DROP FUNCTION canonical_draft_id(text);
