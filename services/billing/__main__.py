"""`python -m services.billing`: run the billing worker and its read API."""

from services.billing.config import Settings
from services.servicekit.serve import serve

if __name__ == "__main__":
    serve("services.billing.main:create_app", Settings())
