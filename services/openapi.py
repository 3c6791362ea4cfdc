"""Write each HTTP service's OpenAPI document: `python -m services.openapi`.

The apps are built but never started, so nothing is connected to: the
documents come from the routes and models alone.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI

from services.billing.config import Settings as BillingSettings
from services.billing.main import create_app as create_billing
from services.jobs.config import Settings as JobsSettings
from services.jobs.main import create_app as create_jobs
from services.question_gen.config import Settings as QuestionSettings
from services.question_gen.main import create_app as create_questions

OUTPUT_DIR = Path(__file__).resolve().parent.parent / "docs" / "openapi"

# "development", so that a shell set up for production (which must name its own
# JWT secret) can still write the documents.
APPS: dict[str, Callable[[], FastAPI]] = {
    "question_gen": lambda: create_questions(QuestionSettings(environment="development")),
    "jobs": lambda: create_jobs(JobsSettings(environment="development")),
    "billing": lambda: create_billing(BillingSettings(environment="development")),
}


def documents() -> dict[str, str]:
    """File name to content of every service's OpenAPI document."""
    return {
        f"{service}.json": json.dumps(build().openapi(), indent=2, sort_keys=True) + "\n"
        for service, build in APPS.items()
    }


def main() -> int:
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    for name, text in documents().items():
        (OUTPUT_DIR / name).write_text(text)
        print(f"wrote docs/openapi/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
