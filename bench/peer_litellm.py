"""Peer: the question service against LiteLLM's proxy, both in front of the same fake LLM.

A lean OpenAI-compatible server (`python -m bench.peer_litellm serve`) answers
every Chat Completions request after 300 ms: whole, or, asked with
`"stream": true`, as OpenAI streams it (a `chat.completion.chunk` a token, about
four characters of the answer, then the usage chunk and `[DONE]`), the whole
stream written when the 300 ms are up. What is compared is the work each proxy
does per call and per chunk, not the pacing of a stream (`generation_streamed`
measures that). It counts the calls it answered (`GET /calls`), and it records
the first body of each kind it received.

Ours: `python -m services.question_gen` (OpenAI writer, its own database and
topology, the relay publishing), driven with `POST /api/ai/generate-questions`,
as JSON and with `Accept: text/event-stream`. Theirs: LiteLLM's proxy, pinned,
installed by this benchmark into a virtual environment of its own under the
user's cache directory, one worker, a master key, no database, a config routing
the model our service asks for to the fake; driven with
`POST /v1/chat/completions` and the very body our service sent the fake (read
back from the fake's record), streamed when that body asks for it.

`wrk` at 100 and 400 connections, JSON and streamed, the two sides alternated
(which goes first alternates too), each run measured over a window of its
steady state (`measure`): requests/s (the calls the fake answered that side),
CPU per call of each server process (user and system time from `/proc`, its
children included, over those calls), and `wrk`'s p50 and p99 latency added to
the fake's 300 ms.
Bar: ours at least 3x theirs in requests/s and in CPU per call, in every cell.

When LiteLLM cannot be installed or started, the result is skipped and says why.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import shutil
import signal
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import harness
from bench.generation_at_llm_latency import cpu_seconds, wait_listening
from bench.harness import Profile, Result, median
from bench.lean_http import LeanHttp

PATH = "/api/ai/generate-questions"
LATENCY = 0.3
CONNECTIONS = (100, 400)
MODES = ("json", "stream")
BAR = 3.0
BAR_TEXT = f"ours/LiteLLM >= {BAR:g} in req/s and CPU/call, every cell"
# A request queued in a proxy is slow, not failed: its latency says so.
TIMEOUT_SECONDS = 30.0
MAX_WARMUP_SECONDS = 30.0
MAX_WINDOW_SECONDS = 40.0
MAX_RUN_SECONDS = 300.0
CHARS_PER_TOKEN = 4
DESCRIPTION = (
    "Senior Python engineer to build event-driven billing: RabbitMQ, PostgreSQL, FastAPI, "
    "asyncio, observability and on-call for a small product team."
)
MASTER_KEY = "sk-bench-master-key"
UPSTREAM_KEY = "bench-key"

LITELLM_VERSION = "1.110.2"
# `litellm[proxy]` also pins `litellm-proxy`, which the package index does not have
# (the proxy's code ships inside `litellm`): the proxy's own dependencies by name
# instead, each pinned within the extra's range, enough for it to start and serve.
LITELLM_REQUIREMENTS = (
    f"litellm=={LITELLM_VERSION}",
    "fastapi==0.165.0",
    "starlette==1.10.0",
    "uvicorn==0.55.0",
    "uvloop==0.23.0",
    "gunicorn==23.0.0",
    "orjson==3.13.0",
    "apscheduler==3.11.3",
    "backoff==2.2.1",
    "pyyaml==6.0.4",
    "rq==2.12.0",
    "python-multipart==0.0.34",
    "cryptography==50.0.2",
    "pynacl==1.6.2",
    "websockets==15.0.1",
    "pyjwt==2.15.1",
    "semver==3.1.2",
    "expression==5.8.0",
    "fastapi-sso==0.23.0",
    "mcp==2.3.0",
    "soundfile==0.14.0",
)
INSTALL_TIMEOUT_SECONDS = 1800.0
START_TIMEOUT_SECONDS = 240.0

# ---------------------------------------------------------------- the lean fake LLM

_CONTENT = json.dumps({"questions": [{"text": f"Question {n}: why?"} for n in range(1, 11)]})
_USAGE = {"prompt_tokens": 120, "completion_tokens": 90, "total_tokens": 210}


def _whole_answer() -> bytes:
    body = json.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 0,
            "model": "gpt-4o-2024-08-06",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": _CONTENT, "refusal": None},
                    "finish_reason": "stop",
                }
            ],
            "usage": _USAGE,
        }
    ).encode()
    head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
    return f"{head}content-length: {len(body)}\r\n\r\n".encode() + body


def _event(choices: list[dict[str, Any]], **fields: Any) -> bytes:
    body = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "gpt-4o-2024-08-06",
        "system_fingerprint": "fp_bench",
        "choices": choices,
        **fields,
    }
    data = b"data: " + json.dumps(body).encode() + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


def _delta(delta: dict[str, Any], finish: str | None = None) -> bytes:
    return _event([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}])


def _streamed_answer() -> tuple[bytes, int]:
    """The whole streamed answer (HTTP head, one HTTP chunk an event) and its event count."""
    pieces = [_CONTENT[i : i + CHARS_PER_TOKEN] for i in range(0, len(_CONTENT), CHARS_PER_TOKEN)]
    events = [
        _delta({"role": "assistant", "content": ""}),
        *(_delta({"content": piece}) for piece in pieces),
        _delta({}, "stop"),
        _event([], usage=_USAGE),
    ]
    done = b"data: [DONE]\n\n"
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
    head += b"transfer-encoding: chunked\r\n\r\n"
    tail = b"%x\r\n%s\r\n0\r\n\r\n" % (len(done), done)
    return head + b"".join(events) + tail, len(events) + 1


_WHOLE = _whole_answer()
_STREAM, STREAM_EVENTS = _streamed_answer()


class _FakeState:
    def __init__(self, record: Path | None) -> None:
        self.calls = 0
        self.record = record
        self.recorded: set[str] = set()


class _FakeLlmProtocol(LeanHttp):
    """One request at a time per connection, answered after `LATENCY`, whole or streamed;
    `GET /calls` answers at once with the count of calls answered."""

    def __init__(self, state: _FakeState) -> None:
        super().__init__()
        self._state = state

    def request(self, head: bytes, body: bytes) -> None:
        if head.startswith(b"GET /calls"):
            self.write(self._count())
            return
        streamed = b'"stream"' in body and json.loads(body).get("stream") is True
        self._keep(body, "stream" if streamed else "json")
        asyncio.get_running_loop().call_later(
            LATENCY, self._answer, _STREAM if streamed else _WHOLE
        )

    def _count(self) -> bytes:
        text = str(self._state.calls).encode()
        return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(text), text)

    def _keep(self, body: bytes, mode: str) -> None:
        if self._state.record is not None and mode not in self._state.recorded:
            (self._state.record / f"{mode}.json").write_bytes(body)
            self._state.recorded.add(mode)

    def _answer(self, answer: bytes) -> None:
        if self.write(answer):
            self._state.calls += 1


async def _serve(port: int, record: Path | None) -> None:
    loop = asyncio.get_running_loop()
    state = _FakeState(record)
    server = await loop.create_server(
        lambda: _FakeLlmProtocol(state), "127.0.0.1", port, backlog=4096
    )
    async with server:
        await server.serve_forever()


def start_fake_llm(record: Path) -> tuple[harness.Process, str]:
    port = harness.free_port()
    process = harness.python_module(
        "fake-llm-peer",
        "bench.peer_litellm",
        "serve",
        "--port",
        str(port),
        "--record",
        str(record),
    )
    return process, f"http://127.0.0.1:{port}"


async def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    import aiohttp

    async with (
        aiohttp.ClientSession() as session,
        session.get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=10)) as response,
    ):
        return response.status, await response.text()


async def fake_calls(fake_url: str) -> int:
    status, text = await _get(fake_url + "/calls")
    if status != 200:
        raise RuntimeError(f"the fake LLM answered {status} for its count")
    return int(text)


# ---------------------------------------------------------------- LiteLLM


class LiteLLMUnavailable(Exception):
    """LiteLLM's proxy could not be installed or started here: the reason."""


def litellm_home() -> Path:
    """The proxy's own virtual environment, outside the repository."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "question-billing" / "bench" / f"litellm-{LITELLM_VERSION}"


async def _run_logged(args: list[str], log: Path, timeout: float) -> None:
    with log.open("ab") as output:
        process = await asyncio.create_subprocess_exec(
            *args, stdout=output, stderr=asyncio.subprocess.STDOUT
        )
        try:
            code = await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise LiteLLMUnavailable(f"{args[0]} took over {timeout:.0f}s") from None
    if code != 0:
        raise LiteLLMUnavailable(f"{' '.join(args[:4])} ... exited {code}: {_last_error(log)}")


def _last_error(log: Path) -> str:
    lines = log.read_text(errors="replace").splitlines()
    errors = [line for line in lines if "ERROR" in line or "rror:" in line] or lines
    return errors[-1] if errors else "(no output)"


async def install_litellm() -> Path:
    """LiteLLM and its proxy's dependencies in their own virtual environment, once per
    version and requirement list; the path of its `litellm` command."""
    home = litellm_home()
    stamp = home / ".installed"
    wanted = "\n".join(LITELLM_REQUIREMENTS) + "\n"
    command = home / "bin" / "litellm"
    if stamp.exists() and stamp.read_text() == wanted and command.exists():
        return command
    shutil.rmtree(home, ignore_errors=True)
    home.parent.mkdir(parents=True, exist_ok=True)
    log = harness.LOG_DIR / "litellm-install.log"
    print(f"  installing LiteLLM {LITELLM_VERSION} into {home} ...", file=sys.stderr, flush=True)
    await _run_logged([sys.executable, "-m", "venv", str(home)], log, 300)
    pip = [str(home / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    await _run_logged([*pip, *LITELLM_REQUIREMENTS], log, INSTALL_TIMEOUT_SECONDS)
    if not command.exists():
        raise LiteLLMUnavailable(f"no `litellm` command in {home} after installing it")
    stamp.write_text(wanted)
    return command


def installed_versions(command: Path) -> dict[str, str]:
    """What pip installed of what matters to the comparison."""
    wanted = {"litellm", "openai", "httpx", "aiohttp", "fastapi", "starlette", "uvicorn", "uvloop"}
    found: dict[str, str] = {}
    site = next(iter((command.parent.parent / "lib").glob("python*/site-packages")), None)
    if site is None:
        return found
    for info in site.glob("*.dist-info"):
        name, _, version = info.name.removesuffix(".dist-info").partition("-")
        if name.lower().replace("_", "-") in wanted:
            found[name.lower()] = version
    return dict(sorted(found.items()))


_LITELLM_LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "stream": "ext://sys.stderr",
        }
    },
    "loggers": {
        "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "uvicorn.access": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
    },
}


def start_litellm(command: Path, fake_url: str, model: str) -> tuple[harness.Process, str]:
    """The proxy, one worker, a master key, no database, `model` routed to the fake."""
    config = harness.LOG_DIR / "litellm-config.yaml"
    # JSON is YAML.
    config.write_text(
        json.dumps(
            {
                "model_list": [
                    {
                        "model_name": model,
                        "litellm_params": {
                            "model": f"openai/{model}",
                            "api_base": fake_url + "/v1",
                            "api_key": UPSTREAM_KEY,
                        },
                    }
                ],
                "general_settings": {"master_key": MASTER_KEY},
            },
            indent=2,
        )
    )
    # No access log, as ours has none; the rest of the proxy's logging as it ships.
    logging_config = harness.LOG_DIR / "litellm-logging.json"
    logging_config.write_text(json.dumps(_LITELLM_LOGGING))
    port = harness.free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(Path.home()),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        # The model cost map from inside the package, not fetched at start.
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    }
    process = harness.Process(
        "litellm",
        [
            str(command),
            "--config",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--num_workers",
            "1",
            "--log_config",
            str(logging_config),
        ],
        env,
        capture=False,
    )
    return process, f"http://127.0.0.1:{port}"


async def wait_litellm(base_url: str, process: harness.Process) -> None:
    import aiohttp

    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.popen.poll() is not None:
            raise LiteLLMUnavailable(f"LiteLLM's proxy exited at start: {process.tail(5)}")
        with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
            status, _ = await _get(base_url + "/health/liveliness")
            if status == 200:
                return
        await asyncio.sleep(0.5)
    raise LiteLLMUnavailable(f"LiteLLM's proxy not ready within {START_TIMEOUT_SECONDS:.0f}s")


# ---------------------------------------------------------------- the two sides


@dataclass(frozen=True)
class Target:
    """One side: where `wrk` sends what, for each mode, and the process whose CPU counts."""

    name: str
    url: str
    pid: int
    bodies: dict[str, dict[str, Any]]
    headers: dict[str, dict[str, str]]


@dataclass(frozen=True)
class Sample:
    """One `wrk` run against one side: `calls` the fake answered and `cpu_seconds` the side
    spent in a window of `seconds`; `requests`, `errors` and latencies are `wrk`'s."""

    side: str
    mode: str
    connections: int
    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p99_ms: float
    cpu_seconds: float
    calls: int

    @property
    def rps(self) -> float:
        """Answered per second in the window (the fake's calls for this side)."""
        return self.calls / self.seconds if self.seconds else 0.0

    @property
    def cpu_ms(self) -> float:
        return self.cpu_seconds * 1000 / self.calls if self.calls else float("nan")


async def _settled(fake_url: str) -> int:
    """The fake's count once the calls still in flight have ended (none for a second)."""
    count = await fake_calls(fake_url)
    deadline = time.monotonic() + TIMEOUT_SECONDS + 10
    while time.monotonic() < deadline:
        await asyncio.sleep(LATENCY + 0.7)
        now = await fake_calls(fake_url)
        if now == count:
            return now
        count = now
    return count


async def _quiet(pid: int) -> None:
    """Until the process is idle (a tenth of a core at most over a second), a minute at most:
    a proxy still working through streams its client left must not load the next run."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        before = cpu_seconds(pid)
        await asyncio.sleep(1.0)
        if cpu_seconds(pid) - before <= 0.1:
            return


async def _calls_reach(fake_url: str, count: int, seconds: float) -> None:
    """Until the fake has answered `count` calls, `seconds` at most."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await fake_calls(fake_url) >= count:
            return
        await asyncio.sleep(0.25)


async def measure(
    target: Target, mode: str, connections: int, window: float, fake_url: str
) -> Sample:
    """`wrk` in a steady state: requests/s and CPU per call over a window of it.

    The window opens once every connection has been through about two calls (a
    proxy that serves its streams side by side finishes its first ones late, all
    together) and lasts `window` seconds or two calls a connection, whichever is
    longer, within bounds. Requests/s there is the rate at which the fake answered
    this side, which in a steady state is the rate at which the side answered
    `wrk`; the CPU is the side's over the same window. Then `wrk` is stopped
    (SIGINT: it prints its figures) and the calls in flight end before the next run.
    """
    start = await fake_calls(fake_url)
    process = harness.start_wrk(
        target.url,
        target.bodies[mode],
        target.headers[mode],
        connections=connections,
        seconds=MAX_RUN_SECONDS,
        timeout=TIMEOUT_SECONDS,
    )
    await asyncio.sleep(1.0)
    await _calls_reach(fake_url, start + 2 * connections, MAX_WARMUP_SECONDS)
    calls_before, cpu_before = await fake_calls(fake_url), cpu_seconds(target.pid)
    opened = time.monotonic()
    await asyncio.sleep(window)
    await _calls_reach(fake_url, calls_before + 2 * connections, MAX_WINDOW_SECONDS - window)
    calls, cpu = await fake_calls(fake_url), cpu_seconds(target.pid)
    closed = time.monotonic()
    process.popen.send_signal(signal.SIGINT)
    data = harness.wrk_summary(await process.output(timeout=60))
    await _settled(fake_url)
    await _quiet(target.pid)
    return Sample(
        side=target.name,
        mode=mode,
        connections=connections,
        requests=data["requests"],
        seconds=closed - opened,
        errors=data["timeouts"] + data["status_errors"] + data["socket_errors"],
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        cpu_seconds=cpu - cpu_before,
        calls=calls - calls_before,
    )


async def capture(url: str, body: dict[str, Any], headers: dict[str, str], record: Path) -> Any:
    """One JSON and one streamed call to ours; the Chat Completions bodies it sent the fake."""
    import aiohttp

    async with aiohttp.ClientSession() as session:
        for accept in ("application/json", "text/event-stream"):
            async with session.post(
                url, json=body, headers={**headers, "Accept": accept}
            ) as response:
                answer = await response.read()
                if response.status != 200:
                    raise RuntimeError(f"ours answered {response.status}: {answer[:300]!r}")
    return {mode: json.loads((record / f"{mode}.json").read_bytes()) for mode in MODES}


# ---------------------------------------------------------------- the benchmark


async def run(profile: Profile) -> Result:
    try:
        command = await install_litellm()
    except (LiteLLMUnavailable, OSError) as exc:
        return skipped(f"LiteLLM {LITELLM_VERSION} could not be installed: {exc}")
    record = harness.LOG_DIR / f"peer-bodies-{uuid.uuid4().hex[:6]}"
    record.mkdir()
    company = uuid.uuid4()
    auth = {"Authorization": f"Bearer {harness.token(company)}"}
    body = {"draftJobId": str(uuid.uuid4()), "jobDescription": DESCRIPTION, "numberOfQuestions": 10}
    window = profile.http_seconds
    fake, fake_url = start_fake_llm(record)
    samples: list[Sample] = []
    try:
        await wait_listening(fake_url, fake)
        async with harness.temp_database("question_gen") as dsn, harness.temp_topology() as topo:
            env = {
                "OPENAI_API_KEY": UPSTREAM_KEY,
                "OPENAI_BASE_URL": fake_url + "/v1",
                "LLM_TIMEOUT_SECONDS": str(TIMEOUT_SECONDS),
            }
            ours_process, ours_url = harness.start_service("question_gen", dsn, topo, **env)
            litellm: harness.Process | None = None
            try:
                await harness.wait_ready(ours_url, ours_process, 60)
                chat = await capture(ours_url + PATH, body, auth, record)
                litellm, litellm_url = start_litellm(command, fake_url, chat["json"]["model"])
                try:
                    await wait_litellm(litellm_url, litellm)
                except LiteLLMUnavailable as exc:
                    return skipped(str(exc))
                ours = Target(
                    "ours",
                    ours_url + PATH,
                    ours_process.pid,
                    {"json": body, "stream": body},
                    {"json": auth, "stream": {**auth, "Accept": "text/event-stream"}},
                )
                master = {"Authorization": f"Bearer {MASTER_KEY}"}
                theirs = Target(
                    "litellm",
                    litellm_url + "/v1/chat/completions",
                    litellm.pid,
                    chat,
                    {"json": master, "stream": master},
                )
                for connections in CONNECTIONS:
                    for mode in MODES:
                        for number in range(profile.rounds):
                            order = (theirs, ours) if number % 2 == 0 else (ours, theirs)
                            for target in order:
                                samples.append(
                                    await measure(target, mode, connections, window, fake_url)
                                )
            finally:
                if litellm is not None:
                    await litellm.stop()
                await ours_process.stop()
    finally:
        await fake.stop()
    return result(samples, installed_versions(command), profile)


def skipped(reason: str) -> Result:
    return Result(
        name="peer_litellm",
        ours=float("nan"),
        baseline=None,
        unit="req/s",
        bar=BAR_TEXT,
        passed=True,
        skipped=reason,
        notes=[f"skipped: {reason}"],
    )


def _added(latency_ms: float) -> float:
    """Latency beyond the fake's own."""
    return round(latency_ms - LATENCY * 1000, 1)


def _cell(samples: list[Sample], side: str, mode: str, connections: int) -> dict[str, Any]:
    mine = [s for s in samples if (s.side, s.mode, s.connections) == (side, mode, connections)]
    # wrk's latencies, of the runs in which it saw answers.
    answered = [s for s in mine if s.requests]
    return {
        "rps": round(median([s.rps for s in mine]), 1),
        "p50_added_ms": _added(median([s.p50_ms for s in answered]) if answered else math.nan),
        "p99_added_ms": _added(median([s.p99_ms for s in answered]) if answered else math.nan),
        "cpu_ms_per_call": round(median([s.cpu_ms for s in mine]), 2),
        "errors": sum(s.errors for s in mine),
        "rps_rounds": [round(s.rps, 1) for s in mine],
        "cpu_ms_rounds": [round(s.cpu_ms, 2) for s in mine],
    }


def result(samples: list[Sample], versions: dict[str, str], profile: Profile) -> Result:
    cells: dict[str, Any] = {}
    ratios: list[float] = []
    checks: dict[str, bool] = {}
    for connections in CONNECTIONS:
        for mode in MODES:
            ours = _cell(samples, "ours", mode, connections)
            theirs = _cell(samples, "litellm", mode, connections)
            rps_ratio = ours["rps"] / theirs["rps"] if theirs["rps"] else float("inf")
            cpu_ratio = theirs["cpu_ms_per_call"] / ours["cpu_ms_per_call"]
            name = f"{mode}_c{connections}"
            cells[name] = {
                "ours": ours,
                "litellm": theirs,
                "rps_ratio": round(rps_ratio, 2),
                "cpu_ratio": round(cpu_ratio, 2),
            }
            ratios += [rps_ratio, cpu_ratio]
            checks[f"{name}: req/s ours/LiteLLM >= {BAR:g}"] = rps_ratio >= BAR
            checks[f"{name}: CPU per call LiteLLM/ours >= {BAR:g}"] = cpu_ratio >= BAR
            checks[f"{name}: no errors of ours"] = ours["errors"] == 0
    first = cells[f"json_c{CONNECTIONS[0]}"]
    outcome = Result(
        name="peer_litellm",
        ours=first["ours"]["rps"],
        baseline=first["litellm"]["rps"],
        unit="req/s",
        ratio=min(ratios),
        bar=BAR_TEXT,
        passed=all(checks.values()),
        details={
            **cells,
            "litellm_installed": versions,
            "stream_events_per_call": STREAM_EVENTS,
            "seconds": profile.http_seconds,
            "rounds": profile.rounds,
        },
    )
    outcome.notes.extend(f"missed: {name}" for name, ok in checks.items() if not ok)
    for name, cell in cells.items():
        if cell["litellm"]["errors"]:
            outcome.notes.append(f"{name}: LiteLLM had {cell['litellm']['errors']} errors")
    return outcome


# ---------------------------------------------------------------- entry points


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.peer_litellm")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="the lean fake LLM, streaming when asked")
    serve.add_argument("--port", type=int, required=True)
    serve.add_argument("--record", type=Path, help="keep the first body of each kind here")
    commands.add_parser("install", help="install LiteLLM's proxy where the benchmark runs it")
    args = parser.parse_args(argv)
    import uvloop

    if args.command == "install":
        print(uvloop.run(install_litellm()))
        return 0
    uvloop.run(_serve(args.port, args.record))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
