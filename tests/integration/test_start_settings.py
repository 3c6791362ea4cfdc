"""What a service does at start with the settings a deployment forgot.

Development is the default, so that `make dev` needs no settings; a service running
as one says so at start. Anywhere else the published development JWT secret stops it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from services.servicekit.settings import DEV_JWT_SECRET
from tests.support.databases import ServiceDatabases
from tests.support.processes import ROOT, ServiceProcess, free_port, run_command, service_env

FORGOTTEN = ("ENVIRONMENT", "AUTH_JWT_SECRET")


def without_forgotten(env: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in env.items() if name not in FORGOTTEN}


@pytest.mark.parametrize("environment", ["test", "production"])
@pytest.mark.parametrize("secret", [None, "", DEV_JWT_SECRET])
async def test_a_service_outside_development_refuses_to_start_with_the_published_secret(
    environment: str, secret: str | None
) -> None:
    env = {**without_forgotten(dict(os.environ)), "ENVIRONMENT": environment}
    if secret is not None:
        env["AUTH_JWT_SECRET"] = secret
    code, output = await run_command(
        sys.executable, "-m", "services.jobs", env=env, cwd=ROOT, timeout=60
    )
    assert code != 0
    assert "AUTH_JWT_SECRET must be set" in output, output


async def test_a_service_left_to_its_default_says_loudly_it_runs_as_development(
    dbs: ServiceDatabases, prefix: str, tmp_path: Path
) -> None:
    port = free_port()
    env = without_forgotten(service_env("jobs", database_url=dbs.jobs, prefix=prefix, port=port))
    process = ServiceProcess("services.jobs", env, port=port, log=tmp_path / "jobs.log")
    # What the service sees is os.environ with `env` on top: neither may name them.
    assert not set(FORGOTTEN) & set(os.environ)
    await process.start()
    try:
        await process.wait_ready()
    finally:
        await process.stop()
    [line] = [
        line for line in process.log.read_text().splitlines() if "ENVIRONMENT is not set" in line
    ]
    assert '"level": "warning"' in line
    assert "published development JWT secret" in line
    assert "platform:admin" in line
