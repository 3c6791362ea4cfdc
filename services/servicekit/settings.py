"""Settings every service shares; each service subclasses with its own defaults."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.servicekit.broker import broker_urls

# Published (it is in this repository): anyone can sign a `platform:admin` token with it. A
# service takes it only in development, and says so loudly at start (`development_warning`).
DEV_JWT_SECRET = "dev-only-secret-change-me-0123456789"  # noqa: S105 - refused outside development


class ServiceSettings(BaseSettings):
    """Read from the environment: `rabbitmq_url` from `RABBITMQ_URL`, and so on.

    Each service reads its own database from `<SERVICE>_DATABASE_URL`, so that
    one shell can run all three without pointing them at one database.
    """

    # No populate_by_name: with it, a plain `DATABASE_URL` or `PORT` (which honcho and
    # many platforms set) would be read by the field's name, and two services of one
    # shell would share a database or a port.
    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    environment: Literal["development", "test", "production"] = "development"
    host: str = "127.0.0.1"
    port: int = 8000
    database_url: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    db_pool_min_size: int = Field(default=2, ge=1)
    db_pool_max_size: int = Field(default=20, ge=1)
    rabbitmq_url: str = Field(
        default="amqp://guest:guest@127.0.0.1:5672/",
        description="One node, or several nodes of one cluster separated by commas.",
    )
    rabbitmq_topology_prefix: str = Field(
        default="", description="Prefix of every exchange and queue name (shared brokers, tests)."
    )
    auth_jwt_secret: SecretStr = SecretStr(DEV_JWT_SECRET)
    log_format: Literal["json", "console"] = "json"
    log_level: str = "INFO"
    graceful_timeout_seconds: float = Field(default=15.0, gt=0)
    max_body_bytes: int = Field(
        default=1024 * 1024, ge=1, description="A request body over this many bytes: 413."
    )
    http_keep_alive_seconds: int = Field(
        default=75,
        ge=1,
        description="How long an idle HTTP connection is kept open: longer than the idle "
        "timeout of any proxy or load balancer in front (those reuse it, and must never be "
        "the ones to find it closed).",
    )

    @field_validator("rabbitmq_url")
    @classmethod
    def _broker_urls(cls, value: str) -> str:
        broker_urls(value)  # a malformed list fails at start, not at the first reconnection
        return value

    @field_validator("auth_jwt_secret")
    @classmethod
    def _unset_when_empty(cls, value: SecretStr) -> SecretStr:
        # `AUTH_JWT_SECRET=` (compose passes an unset variable through as empty) means unset.
        return value if value.get_secret_value() else SecretStr(DEV_JWT_SECRET)

    @model_validator(mode="after")
    def _no_published_secret_outside_development(self) -> ServiceSettings:
        if self.environment != "development" and self.uses_published_secret:
            raise ValueError(
                f"AUTH_JWT_SECRET must be set to a secret of your own when ENVIRONMENT is "
                f"{self.environment}: the development secret is published, and anyone could "
                "sign tokens with it"
            )
        return self

    @property
    def uses_published_secret(self) -> bool:
        return self.auth_jwt_secret.get_secret_value() == DEV_JWT_SECRET

    def development_warning(self) -> str | None:
        """What a service logs at start when it runs as development; None otherwise.

        Development is the default, so that `make dev` needs no settings: a deployment that
        forgets `ENVIRONMENT=production` would run as one, and must not do so quietly.
        """
        if self.environment != "development":
            return None
        how = (
            "ENVIRONMENT is not set, so this service runs as development"
            if "environment" not in self.model_fields_set
            else "ENVIRONMENT is development"
        )
        if self.uses_published_secret:
            return (
                f"{how}, with the published development JWT secret: anyone can sign a token "
                "for any company and role (platform:admin included). Outside a laptop, set "
                "ENVIRONMENT=production and AUTH_JWT_SECRET."
            )
        return f"{how}. Outside a laptop, set ENVIRONMENT=production."


class PublisherSettings(ServiceSettings):
    """Settings of a service that publishes events through its outbox."""

    outbox_batch_size: int = Field(default=200, ge=1, le=10_000)
    outbox_sweep_interval_seconds: float = Field(default=1.0, gt=0)
    outbox_publish_timeout_seconds: float = Field(default=10.0, gt=0)
