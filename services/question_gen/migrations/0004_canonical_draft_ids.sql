-- Draft ids in one spelling: an id that is a UUID, however a browser spelled it (any case,
-- in braces, `urn:uuid:`, with or without hyphens), lower-case and hyphenated; any other id
-- as it was. New ids arrive so (`DraftId` in contracts/events.py: the same rule); this gives
-- the generations recorded before it the same spelling. Only an id not yet canonical is
-- rewritten, and nothing but new inserts writes this table: safe beside live requests.

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

UPDATE generations
SET draft_job_id = canonical_draft_id(draft_job_id)
WHERE draft_job_id IS NOT NULL AND draft_job_id <> canonical_draft_id(draft_job_id);

DROP FUNCTION canonical_draft_id(text);
