import pytest

from services.billing.config import Settings as BillingSettings
from services.jobs.config import Settings as JobsSettings
from services.question_gen.config import Settings as QuestionSettings


def test_each_service_reads_its_own_database_and_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://shared/one")
    monkeypatch.setenv("PORT", "5000")  # what process managers such as honcho set
    monkeypatch.setenv("JOBS_DATABASE_URL", "postgresql://db/jobs_here")
    monkeypatch.setenv("BILLING_PORT", "9003")

    jobs, billing, questions = JobsSettings(), BillingSettings(), QuestionSettings()

    assert jobs.database_url == "postgresql://db/jobs_here"
    assert billing.database_url.endswith("/billing")
    assert questions.database_url.endswith("/question_gen")
    assert (questions.port, jobs.port, billing.port) == (8001, 8002, 9003)


def test_production_refuses_the_development_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.delenv("AUTH_JWT_SECRET", raising=False)
    with pytest.raises(ValueError, match="AUTH_JWT_SECRET"):
        JobsSettings()
    monkeypatch.setenv("AUTH_JWT_SECRET", "a-real-secret-0123456789-0123456789")
    assert JobsSettings().environment == "production"
