from pathlib import Path

import pytest

from services.billing.config import Settings as BillingSettings
from services.jobs.config import Settings as JobsSettings
from services.question_gen.config import Settings as QuestionSettings
from services.servicekit.settings import DEV_JWT_SECRET

ROOT = Path(__file__).resolve().parents[3]


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


@pytest.mark.parametrize("environment", ["test", "production"])
@pytest.mark.parametrize("secret", [None, "", DEV_JWT_SECRET])
def test_outside_development_the_published_secret_is_refused(
    monkeypatch: pytest.MonkeyPatch, environment: str, secret: str | None
) -> None:
    monkeypatch.setenv("ENVIRONMENT", environment)
    if secret is None:
        monkeypatch.delenv("AUTH_JWT_SECRET", raising=False)
    else:
        monkeypatch.setenv("AUTH_JWT_SECRET", secret)  # "": what compose passes when unset
    with pytest.raises(ValueError, match="AUTH_JWT_SECRET must be set"):
        BillingSettings()


def test_development_by_default_says_so_and_what_it_accepts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ENVIRONMENT", raising=False)
    monkeypatch.setenv("AUTH_JWT_SECRET", "")
    settings = JobsSettings()

    assert settings.environment == "development"
    assert settings.auth_jwt_secret.get_secret_value() == DEV_JWT_SECRET
    warning = settings.development_warning()
    assert warning is not None
    assert "ENVIRONMENT is not set" in warning
    assert "platform:admin" in warning
    assert "ENVIRONMENT=production and AUTH_JWT_SECRET" in warning


def test_only_development_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTH_JWT_SECRET", "a-real-secret-0123456789-0123456789")
    monkeypatch.setenv("ENVIRONMENT", "development")
    warning = JobsSettings().development_warning()
    assert warning == "ENVIRONMENT is development. Outside a laptop, set ENVIRONMENT=production."
    for environment in ("test", "production"):
        monkeypatch.setenv("ENVIRONMENT", environment)
        assert JobsSettings().development_warning() is None


def test_compose_carries_no_secret_of_its_own() -> None:
    """An unset AUTH_JWT_SECRET reaches the services unset, never as the published one."""
    text = (ROOT / "docker-compose.yml").read_text()
    assert DEV_JWT_SECRET not in text
    passed = [line.strip() for line in text.splitlines() if "AUTH_JWT_SECRET:" in line]
    assert passed == ["AUTH_JWT_SECRET:"]  # from the shell as it is, with no fallback
