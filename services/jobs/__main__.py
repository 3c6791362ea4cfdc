"""`python -m services.jobs`: serve the jobs service."""

from services.jobs.config import Settings
from services.servicekit.serve import serve

if __name__ == "__main__":
    serve("services.jobs.main:create_app", Settings())
