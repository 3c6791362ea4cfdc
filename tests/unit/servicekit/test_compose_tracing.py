"""The compose file's `tracing` profile: Jaeger receiving OTLP, the services pointed at it
only when asked (an endpoint left unset is tracing off)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]  # PyYAML, which uvicorn[standard] installs

ROOT = Path(__file__).resolve().parents[3]
SERVICES = ("question_gen", "jobs", "billing")


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def test_jaeger_runs_in_the_tracing_profile_alone_and_takes_otlp_over_http() -> None:
    jaeger = compose()["services"]["jaeger"]
    assert jaeger["profiles"] == ["tracing"]
    assert jaeger["image"].startswith("jaegertracing/all-in-one:")
    assert "4318:4318" in jaeger["ports"]  # OTLP/HTTP, where the services export
    assert "16686:16686" in jaeger["ports"]  # the UI


def test_every_service_takes_its_endpoint_from_the_shell_unset_by_default() -> None:
    for name in SERVICES:
        environment = compose()["services"][name]["environment"]
        assert environment["OTEL_EXPORTER_OTLP_ENDPOINT"] == "${OTEL_EXPORTER_OTLP_ENDPOINT:-}"
        assert "OTEL_SERVICE_NAME" not in environment  # each service is named after itself


def test_make_up_tracing_points_the_services_at_jaeger() -> None:
    makefile = (ROOT / "Makefile").read_text()
    target = makefile.split("\nup-tracing:\n", 1)[1].splitlines()[0]
    assert "OTEL_EXPORTER_OTLP_ENDPOINT=http://jaeger:4318" in target
    assert "--profile tracing" in target
