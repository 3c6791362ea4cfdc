-- Reconciliation with the provider's own usage reports: per UTC day and model, billing's
-- ledger of calls against the provider's usage API. (services/billing/reconciliation/;
-- docs/operations.md, "Reconciliation with the provider".)

-- Every run that finished, succeeded or failed; a failed run has its reason and no rows.
-- A run is written once, when it ends, in the transaction that writes its rows: a run
-- cut short leaves nothing. id: the order runs finished in (the latest run of a day wins).
CREATE TABLE reconciliation_runs (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id UUID NOT NULL UNIQUE,
    trigger TEXT NOT NULL CHECK (trigger IN ('schedule', 'request')),
    requested_by TEXT,
    first_day DATE NOT NULL,
    last_day DATE NOT NULL CHECK (last_day >= first_day),
    -- The UTC day the run was made on: its last 3 days are provisional.
    as_of DATE NOT NULL,
    started_at TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('succeeded', 'failed')),
    reason TEXT,
    pages INTEGER NOT NULL DEFAULT 0,
    -- What a succeeded run found, for the metrics without reading its rows.
    matched INTEGER NOT NULL DEFAULT 0,
    drift INTEGER NOT NULL DEFAULT 0,
    provisional INTEGER NOT NULL DEFAULT 0,
    missing_ours INTEGER NOT NULL DEFAULT 0,
    missing_theirs INTEGER NOT NULL DEFAULT 0,
    max_drift_percent NUMERIC(18, 2),
    CONSTRAINT reconciliation_failed_says_why CHECK ((status = 'failed') = (reason IS NOT NULL))
);
-- The latest succeeded run covering a day; the scheduled runs of a day.
CREATE INDEX reconciliation_runs_succeeded ON reconciliation_runs (first_day, last_day, id)
    WHERE status = 'succeeded';
CREATE INDEX reconciliation_runs_by_trigger ON reconciliation_runs (trigger, id);

-- One row per run, day and model (the model's stem: costs/rules.py's model_stem) where
-- either side counted anything: our figures, theirs, and the status the run gave them.
-- Kept for every run, so that a drift that appeared and then resolved (the provider
-- corrected its figures) stays in the history.
CREATE TABLE reconciliation_results (
    -- Written a page at a time, before the run row (written at its end): checked at commit.
    run_id UUID NOT NULL REFERENCES reconciliation_runs (run_id) DEFERRABLE INITIALLY DEFERRED,
    day DATE NOT NULL,
    model TEXT NOT NULL,
    status TEXT NOT NULL
        CHECK (status IN ('matched', 'drift', 'provisional', 'missing-ours', 'missing-theirs')),
    our_requests BIGINT NOT NULL,
    our_input_tokens BIGINT NOT NULL,
    our_cached_input_tokens BIGINT NOT NULL,
    our_output_tokens BIGINT NOT NULL,
    their_requests BIGINT NOT NULL,
    their_input_tokens BIGINT NOT NULL,
    their_cached_input_tokens BIGINT NOT NULL,
    their_output_tokens BIGINT NOT NULL,
    PRIMARY KEY (run_id, day, model)
);

-- A run reads the calls of a range of UTC days. Calls arrive in about the order they
-- happened, so a BRIN index finds a range's blocks at almost no cost to the inserts.
CREATE INDEX llm_calls_by_instant ON llm_calls USING brin (occurred_at);
