from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from services.servicekit.settings import PublisherSettings

# Also the SDK's default; set explicitly, so that an empty OPENAI_BASE_URL cannot win.
OPENAI_BASE_URL = "https://api.openai.com/v1"


class Settings(PublisherSettings):
    database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:5432/question_gen",
        validation_alias="QUESTION_GEN_DATABASE_URL",
    )
    port: int = Field(default=8001, validation_alias="QUESTION_GEN_PORT")

    openai_api_key: SecretStr | None = Field(
        default=None, description="With no key, the offline provider answers."
    )
    openai_base_url: str = Field(
        default=OPENAI_BASE_URL, description="Any OpenAI-compatible server; OpenAI's when unset."
    )
    openai_model: str = Field(
        default="gpt-4o", min_length=1, max_length=50, description="Recorded with every bill."
    )
    llm_timeout_seconds: float = Field(
        default=30.0, gt=0, description="The whole LLM call, retries included: then 504."
    )
    llm_max_retries: int = Field(
        default=2, ge=0, le=10, description="Retries on 429, 5xx and connection errors: then 503."
    )
    llm_retry_delay_seconds: float = Field(
        default=0.5, ge=0, le=10, description="First backoff when the server sets no Retry-After."
    )
    offline_seconds_per_question: float = Field(
        default=0.3,
        ge=0,
        le=5,
        description="With no key: how long the offline writer takes over each question it "
        "streams (about a real LLM's pace).",
    )
    idempotency_wait_seconds: float = Field(
        default=35.0, gt=0, description="How long a retry waits for the first request to finish."
    )
    wait_before_llm_seconds: float = Field(
        default=10.0,
        gt=0,
        le=20,
        description="The most a request waits, once it owns its Idempotency-Key, for a "
        "database connection and its budget reservation before the LLM call: then 503, "
        "nothing billed.",
    )
    budget_hold_seconds: float | None = Field(
        default=None,
        gt=0,
        description="A budget reservation left by a request that died is released after this "
        "(unset: LLM_TIMEOUT_SECONDS + 30, longer than any request).",
    )
    budget_refresh_seconds: float = Field(
        default=1.0, ge=0, le=1.5, description="How long a process trusts what it read of a budget."
    )

    @field_validator("openai_base_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # Compose passes an unset variable as "": the SDK would take "" as the URL.
        if value is None or (isinstance(value, str) and not value.strip()):
            return OPENAI_BASE_URL
        return value

    @property
    def budget_hold(self) -> float:
        return self.budget_hold_seconds or self.llm_timeout_seconds + 30

    @property
    def claim_stale_seconds(self) -> float:
        """When an unfinished Idempotency-Key claim is taken to be a dead request's.

        Past the waits before the LLM and the LLM call itself, with 10 s or more to write
        the answer (`wait_before_llm_seconds` is at most 20).
        """
        return self.llm_timeout_seconds + 30

    @property
    def uses_openai(self) -> bool:
        return self.openai_api_key is not None and bool(self.openai_api_key.get_secret_value())
