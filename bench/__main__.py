"""`make bench` (`python -m bench`): every benchmark, each against its baseline in this run.

    python -m bench                  all of them, measured
    python -m bench --quick          all of them, small N and one round
    python -m bench --only NAME      one of them (repeatable)
    python -m bench --json FILE      also write the results as JSON

The machine is shared and noisy, so each figure is a ratio against a baseline
measured side by side (alternating rounds, median); the absolute figures are
printed for the record. Exit status 1 if a bar is missed.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog
import uvloop

from bench import (
    billing_throughput,
    billing_with_calls,
    budget_overhead,
    close_period,
    cluster_throughput,
    console_load,
    credits_overhead,
    end_to_end,
    generation_at_llm_latency,
    generation_endpoint,
    generation_streamed,
    harness,
    job_creation,
    ledger_reads,
    margin_reads,
    peer_litellm,
    provider_reconciliation,
    reconciliation,
    scale_out,
    tracing_overhead,
)
from bench.harness import Profile, Result

BENCHMARKS: dict[str, Callable[[Profile], Awaitable[Result]]] = {
    "billing_throughput": billing_throughput.run,
    "generation_endpoint": generation_endpoint.run,
    "job_creation": job_creation.run,
    "end_to_end": end_to_end.run,
    "reconciliation": reconciliation.run,
    "scale_out": scale_out.run,
    "generation_at_llm_latency": generation_at_llm_latency.run,
    "generation_streamed": generation_streamed.run,
    "budget_overhead": budget_overhead.run,
    "cluster_throughput": cluster_throughput.run,
    "ledger_reads": ledger_reads.run,
    "rollup_write_cost": ledger_reads.run_write_cost,
    "close_period": close_period.run,
    "credits_overhead": credits_overhead.run,
    "billing_with_calls": billing_with_calls.run,
    "margin_reads": margin_reads.run,
    "console_load": console_load.run,
    "provider_reconciliation": provider_reconciliation.run,
    "tracing_overhead": tracing_overhead.run,
    "peer_litellm": peer_litellm.run,
}


def _figure(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{value:,.1f}" if value >= 10 else f"{value:.3g}"


def table(results: list[Result]) -> str:
    header = ("benchmark", "ours", "baseline", "unit", "ratio", "bar", "result")
    rows = [
        (
            r.name,
            _figure(r.ours),
            _figure(r.baseline),
            r.unit,
            "-" if r.ratio is None else f"{r.ratio:.2f}",
            r.bar,
            "skipped" if r.skipped else "pass" if r.passed else "FAIL",
        )
        for r in results
    ]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(header, widths, strict=True)),
        "  ".join("-" * width for width in widths),
    ]
    for row in rows:
        lines.append(
            "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True))
        )
    return "\n".join(lines)


def describe(result: Result) -> str:
    parts = [f"{key}={value}" for key, value in result.details.items() if not key.endswith("s_")]
    text = f"  {result.name}: " + ", ".join(parts)
    for note in result.notes:
        text += f"\n    note: {note}"
    return text


async def run_all(names: list[str], profile: Profile) -> list[Result]:
    results: list[Result] = []
    try:
        for name in names:
            started = time.monotonic()
            print(f"running {name} ...", file=sys.stderr, flush=True)
            try:
                result = await BENCHMARKS[name](profile)
            except Exception as exc:
                traceback.print_exc()
                result = Result(name, float("nan"), None, "-", "-", False, notes=[repr(exc)])
            result.details["wall_seconds"] = round(time.monotonic() - started, 1)
            print(describe(result), file=sys.stderr, flush=True)
            results.append(result)
    finally:
        await harness.drop_run_databases()
    return results


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--only", action="append", choices=list(BENCHMARKS), default=[])
    parser.add_argument("--quick", action="store_true", help="small N, one round")
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    args = parser.parse_args(argv)
    # The harness's own migrations log at INFO; the services it starts keep their levels.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    profile = Profile.of(args.quick)
    names = args.only or list(BENCHMARKS)
    machine = harness.machine()
    print(
        f"machine: {machine['cores']} cores, {machine['memory_gib']} GiB, {machine['cpu']}, "
        f"load {machine['load_1m']}; HTTP load generator: {harness.load_generator()}; "
        f"{'quick' if args.quick else 'full'} run",
        flush=True,
    )
    started = time.monotonic()
    results = uvloop.run(run_all(names, profile))
    print()
    print(table(results))
    print(f"\n{len(results)} benchmarks in {time.monotonic() - started:.0f}s")
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {"machine": machine, "results": [r.as_dict() for r in results]},
                indent=2,
                default=str,
            )
        )
    passed = all(result.passed for result in results)
    if passed:
        shutil.rmtree(harness.LOG_DIR, ignore_errors=True)
    else:
        print(f"logs of the processes started: {harness.LOG_DIR}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
