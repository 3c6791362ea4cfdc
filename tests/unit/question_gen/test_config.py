"""The question service's LLM settings."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.question_gen.config import OPENAI_BASE_URL, Settings


@pytest.mark.parametrize("value", ["", "  ", None])
def test_an_empty_base_url_means_openais(value: str | None) -> None:
    # An empty OPENAI_BASE_URL (as compose passes an unset one) must not reach the SDK,
    # which would take it as the URL.
    assert Settings(openai_base_url=value).openai_base_url == OPENAI_BASE_URL


def test_an_empty_base_url_from_the_environment_means_openais(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "")
    monkeypatch.setenv("OPENAI_MODEL", "local-model")
    settings = Settings()
    assert settings.openai_base_url == OPENAI_BASE_URL
    assert settings.openai_model == "local-model"


def test_a_base_url_is_kept() -> None:
    assert Settings(openai_base_url="http://127.0.0.1:9/v1").openai_base_url == (
        "http://127.0.0.1:9/v1"
    )


def test_no_key_means_the_offline_writer() -> None:
    assert Settings(openai_api_key=None).uses_openai is False
    assert Settings(openai_api_key="").uses_openai is False
    assert Settings(openai_api_key="sk-test").uses_openai is True


@pytest.mark.parametrize(
    "overrides",
    [
        {"openai_model": ""},
        {"openai_model": "m" * 51},
        {"llm_timeout_seconds": 0},
        {"llm_max_retries": -1},
        {"llm_max_retries": 11},
    ],
)
def test_nonsense_llm_settings_are_refused(overrides: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Settings(**overrides)  # type: ignore[arg-type]
