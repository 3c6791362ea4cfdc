-- Events written in the same transaction as the business row; the relay
-- publishes them with publisher confirms and deletes what the broker confirmed.
CREATE TABLE outbox (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id UUID NOT NULL UNIQUE,
    routing_key TEXT NOT NULL,
    payload JSONB NOT NULL,
    correlation_id TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
