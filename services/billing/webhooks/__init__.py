"""Threshold webhooks: enqueued with the batch that crosses a threshold, delivered at least once."""
