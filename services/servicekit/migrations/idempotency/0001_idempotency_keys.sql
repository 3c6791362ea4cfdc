-- One row per (company, Idempotency-Key): claimed before the work, completed
-- with the response in the work's own transaction.
CREATE TABLE idempotency_keys (
    company_id UUID NOT NULL,
    key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status_code INTEGER,
    response JSONB,
    claimed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    completed_at TIMESTAMPTZ,
    PRIMARY KEY (company_id, key)
);
