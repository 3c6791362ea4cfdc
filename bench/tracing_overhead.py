"""Tracing overhead: the question service at LLM latency and billing's throughput, traced
(exporting over OTLP/HTTP to a receiver on loopback) against not, in the same run.

- Generation: the question service through the real SDK against the lean fake LLM
  answering in 300 ms (`generation_at_llm_latency`), 100 connections; the figure is
  the service's CPU per generation, from `/proc`. Traced, every generation makes a
  server span, the LLM call's span and two publish spans, all exported.
- Billing: the same preloaded `QuestionsGenerated` (each message with a W3C
  `traceparent`, as the relay sends them) drained by billing; the figure is events
  per second (and, for the record, billing's CPU per event). Traced, every batch
  makes a span linking each of its messages.

Each round runs, alternating their order: tracing on, tracing off, on with one trace
in ten sampled (for the record), and (when git can export it) the code from before
tracing existed, off by construction: "off costs nothing" is checked against it.
The median of the rounds is reported.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from bench import harness
from bench.billing_throughput import CONSUMING, preload, wait_for_acks, wait_for_rows
from bench.generation_at_llm_latency import (
    Load,
    cpu_seconds,
    start_fake_llm,
    wait_listening,
    wrk,
)
from bench.generation_endpoint import DESCRIPTION, PATH
from bench.harness import Profile, Result, median
from contracts.topology import Topology
from tests.support import processes
from tests.support.otlp import Receiver, running_receiver

BAR_CPU = 1.15  # traced CPU per generation, against untraced
BAR_THROUGHPUT = 0.9  # traced billing events/s, against untraced
# Off against the code from before tracing: the same within this much (a shared machine).
NOISE = 1.10
LLM_LATENCY = 0.3
SAMPLED = 0.1
CONNECTIONS = 100
# Where the migration that stores the trace context came in: its parent is "before".
TRACING_MIGRATION = "services/servicekit/migrations/outbox/0002_trace_context.sql"
OFF = {"OTEL_EXPORTER_OTLP_ENDPOINT": "", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": ""}


@dataclass(frozen=True)
class Variant:
    name: str
    env: dict[str, str]
    tree: Path | None = None  # the code to run, when not this checkout's


def traced(receiver: Receiver) -> Variant:
    return Variant("on", {**OFF, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint})


def sampled(receiver: Receiver) -> Variant:
    """On, keeping one trace in ten (as a busy deployment would): for the record, no bar."""
    return Variant(
        "sampled_10pct",
        {
            **traced(receiver).env,
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": str(SAMPLED),
        },
    )


@contextlib.contextmanager
def code_before_tracing() -> Iterator[Path | None]:
    """This repository as it was before tracing, exported to a temporary directory; None
    when git cannot say (not a checkout, or the migration not committed yet)."""
    root = processes.ROOT
    git = shutil.which("git")
    if git is None:
        yield None
        return
    try:
        added = subprocess.run(
            [git, "log", "--diff-filter=A", "--format=%H", "--", TRACING_MIGRATION],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        yield None
        return
    if not added:
        yield None
        return
    directory = Path(tempfile.mkdtemp(prefix="tracing-before-"))
    try:
        archive = subprocess.run(
            [git, "archive", f"{added[-1]}^"], cwd=root, capture_output=True, check=True
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(directory, filter="data")
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def start(
    name: str, dsn: str, topology: Topology, variant: Variant, **extra: str
) -> tuple[harness.Process, str]:
    """`python -m services.<name>` as `harness.start_service` starts it, from the variant's
    code (its tree first on the import path), with the variant's environment."""
    if variant.tree is None:
        return harness.start_service(name, dsn, topology, **variant.env, **extra)
    port = harness.free_port()
    variables = processes.service_env(
        name,
        database_url=dsn,
        prefix=topology.prefix,
        port=port,
        rabbitmq_url=harness.RABBITMQ_URL,
        extra={**variant.env, **extra},
    )
    code = (
        f"import runpy, sys; sys.path.insert(0, {str(variant.tree)!r}); "
        f"runpy.run_module('services.{name}', run_name='__main__')"
    )
    process = harness.Process(
        f"{name}-{variant.name}",
        [sys.executable, "-c", code],
        harness.service_env(**variables, PYTHONPATH=str(variant.tree)),
    )
    return process, f"http://127.0.0.1:{port}"


async def generation_cpu(variant: Variant, llm_url: str, profile: Profile) -> Load:
    company = uuid.uuid4()
    headers = {"Authorization": f"Bearer {harness.token(company)}"}
    body = {"draftJobId": str(uuid.uuid4()), "jobDescription": DESCRIPTION, "numberOfQuestions": 10}
    env = {
        "OPENAI_API_KEY": "bench-key",
        "OPENAI_BASE_URL": llm_url + "/v1",
        "LLM_TIMEOUT_SECONDS": "30",
    }
    async with harness.temp_database("question_gen") as dsn, harness.temp_topology() as topo:
        process, base = start("question_gen", dsn, topo, variant, **env)
        try:
            await harness.wait_ready(base, process, 60)
            target = base + PATH
            await wrk(  # warm up: connections to the LLM opened, code paths hot
                target,
                body,
                headers,
                connections=CONNECTIONS,
                latency=LLM_LATENCY,
                seconds=max(profile.warmup_seconds, LLM_LATENCY * 2),
                pid=process.pid,
            )
            return await wrk(
                target,
                body,
                headers,
                connections=CONNECTIONS,
                latency=LLM_LATENCY,
                seconds=max(profile.http_seconds, LLM_LATENCY * 4),
                pid=process.pid,
                dsn=dsn,
            )
        finally:
            await process.stop()


async def billing_rate(variant: Variant, events: int, seed: int) -> tuple[float, float]:
    """Events per second from a preloaded queue to committed rows (`billing_throughput`),
    and billing's CPU per event meanwhile (microseconds): steadier than a rate on a
    shared machine."""
    async with harness.temp_database("billing") as dsn, harness.temp_topology() as topology:
        await preload(topology, events, seed=seed, traceparent=True)
        process, url = start("billing", dsn, topology, variant)
        try:
            started = await process.logged_at(CONSUMING, timeout=60)
            cpu_before = cpu_seconds(process.pid)
            finished = await wait_for_rows(dsn, events)
            cpu_used = cpu_seconds(process.pid) - cpu_before
            await wait_for_acks([url], events)
        finally:
            await process.stop()
        conn = await asyncpg.connect(dsn)
        try:
            rows = await conn.fetchval(
                "SELECT count(DISTINCT event_id) FROM question_generation_usage"
            )
        finally:
            await conn.close()
    if rows != events:
        raise RuntimeError(f"billing ({variant.name}) recorded {rows} of {events} events")
    return events / (finished - started), cpu_used * 1e6 / events


async def run(profile: Profile) -> Result:
    cpu: dict[str, list[float]] = {}
    rates: dict[str, list[float]] = {}
    billing_cpu: dict[str, list[float]] = {}
    with running_receiver() as receiver, code_before_tracing() as before:
        variants = [traced(receiver), Variant("off", OFF), sampled(receiver)]
        if before is not None:
            variants.append(Variant("before", OFF, before))
        llm, llm_url = start_fake_llm(LLM_LATENCY)
        try:
            await wait_listening(llm_url, llm)
            for round_ in range(profile.rounds):
                order = variants if round_ % 2 == 0 else variants[::-1]
                for variant in order:
                    load = await generation_cpu(variant, llm_url, profile)
                    cpu.setdefault(variant.name, []).append(load.cpu_ms)
                for variant in order:
                    rate, used = await billing_rate(variant, profile.events, seed=round_ + 1)
                    rates.setdefault(variant.name, []).append(rate)
                    billing_cpu.setdefault(variant.name, []).append(used)
        finally:
            await llm.stop()
        exported = len(receiver.spans)
    return _result(cpu, rates, billing_cpu, exported, profile)


def _result(
    cpu: dict[str, list[float]],
    rates: dict[str, list[float]],
    billing_cpu: dict[str, list[float]],
    exported: int,
    profile: Profile,
) -> Result:
    cpu_on, cpu_off = median(cpu["on"]), median(cpu["off"])
    rate_on, rate_off = median(rates["on"]), median(rates["off"])
    cpu_ratio, rate_ratio = cpu_on / cpu_off, rate_on / rate_off
    checks = {
        f"CPU per generation traced/untraced <= {BAR_CPU}": cpu_ratio <= BAR_CPU,
        f"billing events/s traced/untraced >= {BAR_THROUGHPUT}": rate_ratio >= BAR_THROUGHPUT,
        "the traced services exported spans": exported > 0,
    }
    details: dict[str, object] = {
        "cpu_ms_per_generation": {
            name: [round(v, 3) for v in values] for name, values in cpu.items()
        },
        "billing_events_per_second": {
            name: [round(v, 1) for v in values] for name, values in rates.items()
        },
        "billing_cpu_us_per_event": {
            name: [round(v, 1) for v in values] for name, values in billing_cpu.items()
        },
        "cpu_ratio_on_off": round(cpu_ratio, 3),
        "billing_cpu_ratio_on_off": round(
            median(billing_cpu["on"]) / median(billing_cpu["off"]), 3
        ),
        "billing_ratio_on_off": round(rate_ratio, 3),
        "spans_exported": exported,
        "events": profile.events,
        "rounds": profile.rounds,
        "seconds": profile.http_seconds,
    }
    if "sampled_10pct" in cpu:
        details["cpu_ratio_sampled_off"] = round(median(cpu["sampled_10pct"]) / cpu_off, 3)
        details["billing_ratio_sampled_off"] = round(median(rates["sampled_10pct"]) / rate_off, 3)
    if "before" in cpu:
        cpu_before, rate_before = median(cpu["before"]), median(rates["before"])
        details["cpu_ratio_off_before"] = round(cpu_off / cpu_before, 3)
        details["billing_ratio_off_before"] = round(rate_off / rate_before, 3)
        checks[f"off against before tracing: CPU within {NOISE}x"] = cpu_off <= cpu_before * NOISE
        checks[f"off against before tracing: billing within {NOISE}x"] = (
            rate_off * NOISE >= rate_before
        )
    result = Result(
        name="tracing_overhead",
        ours=cpu_on,
        baseline=cpu_off,
        unit="CPU ms/generation",
        ratio=cpu_ratio,
        bar=f"CPU on/off <= {BAR_CPU}, billing on/off >= {BAR_THROUGHPUT}",
        passed=all(checks.values()),
        details=details,
    )
    result.notes.extend(f"missed: {name}" for name, ok in checks.items() if not ok)
    if "before" not in cpu:
        result.notes.append("no code from before tracing to compare 'off' with (git)")
    return result
