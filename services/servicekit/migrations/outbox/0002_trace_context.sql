-- The W3C trace context of the request that wrote the event, put into the AMQP
-- message's headers when the relay publishes it (however much later that is).
ALTER TABLE outbox
    ADD COLUMN traceparent TEXT,
    ADD COLUMN tracestate TEXT;
