"""Where the test servers are, and this run's unique name."""

from __future__ import annotations

import os
import uuid

ADMIN_DSN = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
RABBITMQ_URL = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")

# Every database, exchange and queue this run makes carries this prefix.
RUN_ID = f"t{uuid.uuid4().hex[:10]}"
