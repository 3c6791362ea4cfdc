"""Services as real subprocesses (`python -m services.<name>`), on free ports.

What a test cannot do in-process: kill a service with SIGKILL, or send it
SIGTERM and watch it exit. Output goes to a log file, read back on failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from tests.support.auth import TEST_SECRET
from tests.support.env import RABBITMQ_URL

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def readyz(base_url: str) -> tuple[int, dict[str, object]]:
    """Status and body of `/readyz`; (0, {}) while nothing listens."""
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            response = await client.get(f"{base_url}/readyz")
    except httpx.TransportError:
        return 0, {}
    body: dict[str, object] = response.json()
    return response.status_code, body


async def wait_until_ready(
    base_url: str,
    name: str,
    *,
    exited: Callable[[], bool],
    tail: Callable[[], str],
    timeout: float,
) -> None:
    """Poll `/readyz` until 200; fail at once if the process exits, or after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        if exited():
            raise RuntimeError(f"{name} exited at start:\n{tail()}")
        status, _ = await readyz(base_url)
        if status == 200:
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{name} not ready within {timeout}s:\n{tail()}")
        await asyncio.sleep(0.1)


class ServiceProcess:
    """One service process; `start` again after it exited runs it anew on the same port."""

    def __init__(self, module: str, env: Mapping[str, str], *, port: int, log: Path) -> None:
        self.module = module
        self.env = dict(env)
        self.port = port
        self.log = log
        self.starts = 0
        self._process: asyncio.subprocess.Process | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.returncode

    async def start(self) -> None:
        assert self._process is None or self._process.returncode is not None, "still running"
        self.starts += 1
        with self.log.open("ab") as out:
            out.write(f"--- start {self.starts} ---\n".encode())
            out.flush()
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                self.module,
                cwd=ROOT,
                env={**os.environ, **self.env},
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
            )

    async def readyz(self) -> tuple[int, dict[str, object]]:
        return await readyz(self.base_url)

    async def wait_ready(self, timeout: float = 30.0) -> None:
        await wait_until_ready(
            self.base_url,
            self.module,
            exited=lambda: self.returncode is not None,
            tail=self.tail,
            timeout=timeout,
        )

    def send(self, sig: signal.Signals) -> None:
        assert self._process is not None
        self._process.send_signal(sig)

    async def wait(self, timeout: float) -> int:
        """Wait for the process to exit; its return code."""
        assert self._process is not None
        return await asyncio.wait_for(self._process.wait(), timeout)

    async def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        if self._process is not None and self._process.returncode is None:
            self._process.kill()
            await self._process.wait()

    async def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time."""
        if self._process is None or self._process.returncode is not None:
            return
        self._process.terminate()
        try:
            await self.wait(timeout)
        except TimeoutError:
            await self.kill()

    def tail(self, lines: int = 40) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


# A test's billing shares the machine with many others.
SMALL_POOL = {"DB_POOL_MIN_SIZE": "1", "DB_POOL_MAX_SIZE": "5"}

# Each service's database and port variables.
SERVICE_VARIABLES = {
    "billing": ("BILLING_DATABASE_URL", "BILLING_PORT"),
    "jobs": ("JOBS_DATABASE_URL", "JOBS_PORT"),
    "question_gen": ("QUESTION_GEN_DATABASE_URL", "QUESTION_GEN_PORT"),
}


def service_env(
    service: str,
    *,
    database_url: str,
    prefix: str,
    port: int,
    rabbitmq_url: str = RABBITMQ_URL,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """What `python -m services.<service>` needs to run apart from everything else."""
    database_variable, port_variable = SERVICE_VARIABLES[service]
    return {
        "ENVIRONMENT": "test",
        database_variable: database_url,
        port_variable: str(port),
        "RABBITMQ_URL": rabbitmq_url,
        "RABBITMQ_TOPOLOGY_PREFIX": prefix,
        "AUTH_JWT_SECRET": TEST_SECRET,
        "LOG_FORMAT": "json",
        **(extra or {}),
    }


@asynccontextmanager
async def billing_process(
    *,
    database_url: str,
    prefix: str,
    log_dir: Path,
    rabbitmq_url: str = RABBITMQ_URL,
    extra_env: Mapping[str, str] | None = None,
    wait_ready: bool = True,
) -> AsyncIterator[ServiceProcess]:
    """`python -m services.billing`, started (and ready); stopped at the end whatever happened."""
    port = free_port()
    env = service_env(
        "billing",
        database_url=database_url,
        prefix=prefix,
        port=port,
        rabbitmq_url=rabbitmq_url,
        extra={**SMALL_POOL, **(extra_env or {})},
    )
    process = ServiceProcess("services.billing", env, port=port, log=log_dir / "billing.log")
    await process.start()
    try:
        if wait_ready:
            await process.wait_ready()
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            await process.stop(timeout=20)


async def run_command(
    *command: str, env: Mapping[str, str], timeout: float = 60.0, cwd: Path | None = None
) -> tuple[int, str]:
    """Run `command` to its end with exactly `env`; its return code and output (both streams).

    Past `timeout` the process is killed and `TimeoutError` raised.
    """
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=cwd,
        env=dict(env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")


async def run_module(
    module: str, *args: str, env: Mapping[str, str], timeout: float = 60.0
) -> tuple[int, str]:
    """Run `python -m module args...` to its end; its return code and output (both streams)."""
    return await run_command(
        sys.executable, "-m", module, *args, env={**os.environ, **env}, timeout=timeout, cwd=ROOT
    )
