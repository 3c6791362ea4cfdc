from __future__ import annotations

from pydantic import Field, SecretStr

from services.servicekit.settings import PublisherSettings


class Settings(PublisherSettings):
    database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:5432/question_gen",
        validation_alias="QUESTION_GEN_DATABASE_URL",
    )
    port: int = Field(default=8001, validation_alias="QUESTION_GEN_PORT")

    openai_api_key: SecretStr | None = Field(
        default=None, description="With no key, the offline provider answers."
    )
    openai_base_url: str | None = None
    openai_model: str = "gpt-4o"
    llm_timeout_seconds: float = Field(default=30.0, gt=0)
    llm_max_retries: int = Field(default=2, ge=0, le=10)
    idempotency_wait_seconds: float = Field(
        default=35.0, gt=0, description="How long a retry waits for the first request to finish."
    )

    @property
    def uses_openai(self) -> bool:
        return self.openai_api_key is not None and bool(self.openai_api_key.get_secret_value())
