"""`make token COMPANY=<uuid>`: print a development JWT for a company (valid 12 hours)."""

from __future__ import annotations

import sys
import uuid

from services.servicekit.auth import issue_token
from services.servicekit.settings import ServiceSettings


def main(argv: list[str]) -> int:
    try:
        company = uuid.UUID(argv[0]) if argv else uuid.uuid4()
    except ValueError:
        print(f"not a UUID: {argv[0]}", file=sys.stderr)
        return 2
    secret = ServiceSettings().auth_jwt_secret.get_secret_value()
    print(issue_token(secret, company, user="dev@example.com", ttl_seconds=12 * 3600))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
