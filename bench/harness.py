"""What every benchmark shares: temporary databases and broker names, service processes,
the HTTP load generator, percentiles and the result rows.

Everything a benchmark creates carries this run's unique name and is removed after:
databases are dropped, exchanges and queues deleted, processes stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg

from bench.load import percentile as percentile  # re-exported for the benchmarks
from contracts.topology import Topology
from services.servicekit.migrations import with_database
from tests.support import auth, processes
from tests.support.broker import declare_topology_at
from tests.support.broker import delete_topology_at as delete_service_topology
from tests.support.databases import drop_databases, migrated_database
from tests.support.processes import ROOT, wait_until_ready

ADMIN_DSN = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
RABBITMQ_URL = os.environ.get("BENCH_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")

# Every database, exchange and queue of this run carries this name.
RUN_ID = f"bench{uuid.uuid4().hex[:8]}"
_counter = itertools.count(1)
LOG_DIR = Path(tempfile.mkdtemp(prefix=f"{RUN_ID}-logs-"))


# ---------------------------------------------------------------- results


@dataclass
class Result:
    """One line of the table: ours against its baseline, measured in the same run."""

    name: str
    ours: float
    baseline: float | None
    unit: str
    bar: str
    passed: bool
    ratio: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # Why nothing was measured (what the comparison needs is missing here), if so.
    skipped: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ours": self.ours,
            "baseline": self.baseline,
            "unit": self.unit,
            "ratio": self.ratio,
            "bar": self.bar,
            "passed": self.passed,
            "details": self.details,
            "notes": self.notes,
            "skipped": self.skipped,
        }


@dataclass(frozen=True)
class Profile:
    """How much work one run does: `--quick` is a smoke test, the default a measurement."""

    quick: bool
    rounds: int
    events: int
    http_seconds: float
    warmup_seconds: float
    steady_seconds: float
    large_rows: int

    @classmethod
    def of(cls, quick: bool) -> Profile:
        if quick:
            return cls(True, 1, 3_000, 3.0, 1.0, 5.0, 100_000)
        return cls(False, 3, 20_000, 8.0, 2.0, 15.0, 1_000_000)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


# ---------------------------------------------------------------- machine


def machine() -> dict[str, Any]:
    cores = os.cpu_count() or 0
    memory_gib = 0.0
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gib = int(line.split()[1]) / 1024 / 1024
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return {
        "cores": cores,
        "memory_gib": round(memory_gib, 1),
        "cpu": model,
        "load_1m": round(load, 2),
    }


# ---------------------------------------------------------------- PostgreSQL


def dsn_of(database: str) -> str:
    return with_database(ADMIN_DSN, database)


@contextlib.asynccontextmanager
async def temp_database(service: str) -> AsyncIterator[str]:
    """A fresh, migrated database of `service` under a unique name; dropped after."""
    name = f"{RUN_ID}_{next(_counter)}_{service}"
    async with migrated_database(service, name, admin_dsn=ADMIN_DSN) as dsn:
        yield dsn


async def drop_run_databases() -> None:
    """Whatever this run left behind (a benchmark interrupted half-way)."""
    await drop_databases(prefix=f"{RUN_ID}_", admin_dsn=ADMIN_DSN)


async def count_rows(dsn: str, table: str = "question_generation_usage") -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
    finally:
        await conn.close()


# ---------------------------------------------------------------- RabbitMQ


async def declare_topology(topology: Topology) -> None:
    """The services' own declarations (so that theirs are no-ops when they start)."""
    await declare_topology_at(RABBITMQ_URL, topology)


async def delete_topology(topology: Topology) -> None:
    await delete_service_topology(RABBITMQ_URL, topology)


@contextlib.asynccontextmanager
async def temp_topology() -> AsyncIterator[Topology]:
    """Exchange, billing queue and DLQ under a unique prefix; deleted after."""
    topology = Topology(f"{RUN_ID}.{next(_counter)}.")
    try:
        await declare_topology(topology)
        yield topology
    finally:
        await delete_topology(topology)


# ---------------------------------------------------------------- processes


free_port = processes.free_port


def token(company_id: uuid.UUID) -> str:
    return auth.token(company_id, user=None, ttl_seconds=3600 * 4)


def operator_token(company_id: uuid.UUID) -> str:
    """A `platform:admin` token: the operator's reads (prices, the margin)."""
    return auth.token(company_id, user="operator", roles=["platform:admin"], ttl_seconds=3600 * 4)


def service_env(**extra: str) -> dict[str, str]:
    """This environment without the services' own settings, which each process is given."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("OPENAI_", "BILLING_", "JOBS_", "QUESTION_GEN_", "LOG_"))
    }
    env.update(
        {
            "RABBITMQ_URL": RABBITMQ_URL,
            "AUTH_JWT_SECRET": auth.TEST_SECRET,
            "LOG_FORMAT": "json",
            "ENVIRONMENT": "test",
            "PYTHONPATH": str(ROOT),
        }
    )
    env.update(extra)
    return env


class Process:
    """A child process whose output goes to a log file; stopped with SIGTERM, then SIGKILL."""

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        env: dict[str, str] | None = None,
        *,
        capture: bool = True,
    ) -> None:
        """`capture=False`: standard output goes to the log too (a server that writes
        there would otherwise fill a pipe nobody reads, and block)."""
        self.name = name
        self.log_path = LOG_DIR / f"{name}-{next(_counter)}.log"
        self._log = self.log_path.open("wb")
        self.popen = subprocess.Popen(
            list(args),
            cwd=ROOT,
            env=env or service_env(),
            stdout=subprocess.PIPE if capture else self._log,
            stderr=self._log,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    async def output(self, timeout: float) -> str:
        """Wait for the process to finish; its standard output."""
        assert self.popen.stdout is not None
        loop = asyncio.get_running_loop()
        out = await asyncio.wait_for(loop.run_in_executor(None, self.popen.stdout.read), timeout)
        await asyncio.wait_for(loop.run_in_executor(None, self.popen.wait), timeout)
        if self.popen.returncode != 0:
            raise RuntimeError(f"{self.name} exited {self.popen.returncode}: {self.tail()}")
        return out.decode()

    async def json(self, timeout: float) -> Any:
        text = await self.output(timeout)
        return json.loads(text.strip().splitlines()[-1])

    async def logged(self, event: str, *, timeout: float = 60.0) -> dict[str, Any]:
        """The first JSON log line whose `event` is `event`, waiting for it to be written."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                for line in self.log_path.read_text(errors="replace").splitlines():
                    if event in line:
                        with contextlib.suppress(ValueError):
                            record: dict[str, Any] = json.loads(line)
                            if record.get("event") == event:
                                return record
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.tail()}")
            await asyncio.sleep(0.02)
        raise TimeoutError(f"{self.name} did not log {event!r} within {timeout}s: {self.tail()}")

    async def logged_at(self, event: str, *, timeout: float = 60.0) -> float:
        """Wall-clock time of that log line (structlog's ISO timestamp)."""
        record = await self.logged(event, timeout=timeout)
        return datetime.fromisoformat(str(record["timestamp"])).timestamp()

    def tail(self, lines: int = 15) -> str:
        self._log.flush()
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    async def stop(self, timeout: float = 30.0) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            loop = asyncio.get_running_loop()
            try:
                await asyncio.wait_for(loop.run_in_executor(None, self.popen.wait), timeout)
            except TimeoutError:
                self.popen.kill()
                await loop.run_in_executor(None, self.popen.wait)
        if self.popen.stdout is not None:
            self.popen.stdout.close()
        self._log.close()


def start_service(
    name: str, database_url: str, topology: Topology, **extra_env: str
) -> tuple[Process, str]:
    """`python -m services.<name>` on a free port; returns the process and its base URL."""
    port = free_port()
    variables = processes.service_env(
        name,
        database_url=database_url,
        prefix=topology.prefix,
        port=port,
        rabbitmq_url=RABBITMQ_URL,
        extra=extra_env,
    )
    process = Process(name, [sys.executable, "-m", f"services.{name}"], service_env(**variables))
    return process, f"http://127.0.0.1:{port}"


@contextlib.asynccontextmanager
async def service(
    name: str,
    database_url: str,
    topology: Topology,
    *,
    ready_timeout: float = 60.0,
    **extra_env: str,
) -> AsyncIterator[str]:
    """A service process, ready (its /readyz answers 200); stopped after."""
    process, base_url = start_service(name, database_url, topology, **extra_env)
    try:
        await wait_ready(base_url, process, ready_timeout)
        yield base_url
    finally:
        await process.stop()


async def wait_ready(base_url: str, process: Process, timeout: float) -> None:
    await wait_until_ready(
        base_url,
        process.name,
        exited=lambda: process.popen.poll() is not None,
        tail=process.tail,
        timeout=timeout,
    )


def python_module(name: str, module: str, *args: str) -> Process:
    return Process(name, [sys.executable, "-m", module, *args])


# ---------------------------------------------------------------- HTTP load


@dataclass(frozen=True)
class LoadResult:
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    generator: str

    @classmethod
    def of(cls, report: dict[str, Any], generator: str) -> LoadResult:
        """What a load process printed (`bench.load.load_report`)."""
        return cls(
            report["requests"],
            report["errors"],
            report["seconds"],
            report["p50_ms"],
            report["p99_ms"],
            generator,
        )

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def load_generator() -> str:
    """`wrk` when installed (it costs the server the least CPU), else the Python one."""
    chosen = os.environ.get("BENCH_LOAD_GENERATOR", "auto")
    if chosen == "auto":
        return "wrk" if shutil.which("wrk") else "python"
    return chosen


WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = {body}
{headers}
done = function(summary, latency, requests)
  io.write(string.format(
    '{{"requests": %d, "seconds": %.6f, "timeouts": %d, "status_errors": %d, '
    .. '"socket_errors": %d, "p50_us": %d, "p99_us": %d}}\\n',
    summary.requests, summary.duration / 1e6, summary.errors.timeout, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write,
    latency:percentile(50), latency:percentile(99)))
end
"""


def _lua_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def start_wrk(
    url: str,
    body: dict[str, Any],
    headers: dict[str, str],
    *,
    connections: int,
    seconds: float,
    timeout: float,
    threads: int = 2,
) -> Process:
    """`wrk` POSTing one JSON body for `seconds`; read its output with `wrk_summary`."""
    all_headers = {"Content-Type": "application/json", **headers}
    script = LOG_DIR / f"wrk-{next(_counter)}.lua"
    header_lines = "\n".join(
        f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in all_headers.items()
    )
    script.write_text(WRK_SCRIPT.format(body=_lua_string(json.dumps(body)), headers=header_lines))
    return Process(
        "wrk",
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            f"{round(timeout)}s",
            "-s",
            str(script),
            url,
        ],
    )


def wrk_summary(output: str) -> dict[str, Any]:
    """What `WRK_SCRIPT` prints when `wrk` is done: `requests`, `seconds`, `timeouts`,
    `status_errors`, `socket_errors`, `p50_us`, `p99_us`."""
    summary: dict[str, Any] = json.loads(
        [row for row in output.splitlines() if row.startswith("{")][-1]
    )
    return summary


async def http_load(
    url: str,
    body: dict[str, Any],
    headers: dict[str, str],
    *,
    concurrency: int,
    seconds: float,
) -> LoadResult:
    """Closed-loop POSTs of one body for `seconds`, from a process of its own."""
    if load_generator() == "wrk":
        process = start_wrk(
            url,
            body,
            headers,
            connections=concurrency,
            seconds=seconds,
            timeout=10,
            threads=max(1, min(2, concurrency)),
        )
        data = wrk_summary(await process.output(timeout=seconds + 60))
        return LoadResult(
            data["requests"],
            data["timeouts"] + data["status_errors"] + data["socket_errors"],
            data["seconds"],
            data["p50_us"] / 1000,
            data["p99_us"] / 1000,
            "wrk",
        )
    all_headers = {"Content-Type": "application/json", **headers}
    spec = LOG_DIR / f"load-{next(_counter)}.json"
    spec.write_text(json.dumps({"url": url, "body": json.dumps(body), "headers": all_headers}))
    process = python_module(
        "load",
        "bench.load",
        "closed",
        str(spec),
        "--concurrency",
        str(concurrency),
        "--seconds",
        str(seconds),
    )
    return LoadResult.of(await process.json(timeout=seconds + 60), "python")


@contextlib.contextmanager
def stopwatch() -> Iterator[list[float]]:
    box: list[float] = []
    started = time.perf_counter()
    try:
        yield box
    finally:
        box.append(time.perf_counter() - started)


Measure = Callable[[float], Awaitable[LoadResult]]


async def alternate(
    profile: Profile, ours: Measure, baseline: Measure
) -> tuple[list[LoadResult], list[LoadResult]]:
    """Warm both up, then rounds of each in turn (which goes first alternates)."""
    await ours(profile.warmup_seconds)
    await baseline(profile.warmup_seconds)
    ours_results: list[LoadResult] = []
    baseline_results: list[LoadResult] = []
    for round_ in range(profile.rounds):
        if round_ % 2 == 0:
            baseline_results.append(await baseline(profile.http_seconds))
            ours_results.append(await ours(profile.http_seconds))
        else:
            ours_results.append(await ours(profile.http_seconds))
            baseline_results.append(await baseline(profile.http_seconds))
    return ours_results, baseline_results


def summary(results: Sequence[LoadResult]) -> dict[str, float]:
    """Medians over rounds of throughput and latency."""
    return {
        "rps": median([r.rps for r in results]),
        "p50_ms": median([r.p50_ms for r in results]),
        "p99_ms": median([r.p99_ms for r in results]),
        "errors": float(sum(r.errors for r in results)),
    }


def throughput_result(
    name: str,
    ours: Sequence[LoadResult],
    baseline: Sequence[LoadResult],
    *,
    baseline_name: str,
    bar: float,
    **details: Any,
) -> Result:
    """Ours against the baseline, by median requests per second over alternating rounds."""
    mine, theirs = summary(ours), summary(baseline)
    ratio = mine["rps"] / theirs["rps"]
    result = Result(
        name=name,
        ours=mine["rps"],
        baseline=theirs["rps"],
        unit="req/s",
        ratio=ratio,
        bar=f"ours/{baseline_name} >= {bar}",
        passed=ratio >= bar and mine["errors"] == 0,
        details={
            **details,
            "ours_p50_ms": round(mine["p50_ms"], 2),
            "ours_p99_ms": round(mine["p99_ms"], 2),
            f"{baseline_name}_p50_ms": round(theirs["p50_ms"], 2),
            f"{baseline_name}_p99_ms": round(theirs["p99_ms"], 2),
            "errors": mine["errors"],
            "rounds": len(ours),
            "generator": ours[0].generator,
            "ours_rounds": [round(r.rps, 1) for r in ours],
            f"{baseline_name}_rounds": [round(r.rps, 1) for r in baseline],
        },
    )
    if mine["errors"]:
        result.notes.append(f"{mine['errors']:.0f} requests failed")
    return result
