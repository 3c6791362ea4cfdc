"""Streamed generation: how soon the first question reaches the client, and what a stream costs.

A lean OpenAI-compatible server (`python -m bench.generation_streamed serve`)
writes its answer as OpenAI streams one: a chunk per token (about four
characters of the answer), 80 tokens a second after a first token at 300 ms,
the usage chunk last; asked without `"stream"`, it answers the same text whole
after the time the stream takes. The chunk that closes the first question
carries the fake's own clock (`time.monotonic_ns`, one clock for every process
of the machine) inside the question's text, so the client, reading the service's
`question` event, knows exactly how long the service took to pass it on.

At 100 concurrent clients (each a closed loop, in a process of its own), the
question service (OpenAI writer, its own database and topology, the relay
publishing) is driven with streamed requests and with JSON requests, in
alternating rounds of the same run:

- time to the first `question` event minus the fake's time to its first
  question: p50 and p99 (bar: p99 < 20 ms);
- CPU per streamed generation against the JSON call's (bar: <= 1.3x), the
  service's user and system time from `/proc` over the generation rows it wrote.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
import uuid
from dataclasses import dataclass
from functools import partial
from typing import Any

from bench import harness
from bench.generation_at_llm_latency import cpu_seconds, wait_listening
from bench.harness import Profile, Result, median, percentile
from bench.lean_http import LeanHttp

PATH = "/api/ai/generate-questions"
CONCURRENCY = 100
FIRST_TOKEN_SECONDS = 0.3
TOKENS_PER_SECOND = 80.0
CHARS_PER_TOKEN = 4
QUESTION_CHUNK_CHARS = 1000  # more than a question: one chunk each
BAR_P99_ADDED_MS = 20.0
BAR_CPU_RATIO = 1.3
DESCRIPTION = "Senior backend engineer: Python, PostgreSQL, RabbitMQ, billing that is exact."
QUESTIONS = [
    f"Question {n}: tell us about a time you had to make a hard call with little data?"
    for n in range(1, 11)
]
STAMP = re.compile(rb"\[t=(\d+)\]")

# ---------------------------------------------------------------- the lean streaming fake


def _chunk(content: str) -> bytes:
    body = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "gpt-4o-2024-08-06",
        "system_fingerprint": "fp_bench",
        "choices": [
            {"index": 0, "delta": {"content": content}, "logprobs": None, "finish_reason": None}
        ],
    }
    data = b"data: " + json.dumps(body).encode() + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


def _pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def _plan(chunk_chars: int) -> tuple[list[bytes], int]:
    """The stream's chunks, each of `chunk_chars` characters of a question's JSON, and the
    index of the one that closes the first question (made, with its stamp, when written)."""
    pieces = [*_pieces('{"questions": [{"text": "' + QUESTIONS[0], chunk_chars), "<stamp>"]
    for question in QUESTIONS[1:]:
        pieces += _pieces(json.dumps({"text": question}) + ", ", chunk_chars)
    pieces[-1] = pieces[-1].removesuffix(", ")
    pieces.append("]}")
    return [b"" if p == "<stamp>" else _chunk(p) for p in pieces], pieces.index("<stamp>")


_USAGE = {"prompt_tokens": 120, "completion_tokens": 180, "total_tokens": 300}
_LAST = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "choices": [], "usage": _USAGE}
_END_DATA = b"data: " + json.dumps(_LAST).encode() + b"\n\ndata: [DONE]\n\n"
# The usage chunk, [DONE], and the chunked body's end.
_END = b"%x\r\n%s\r\n0\r\n\r\n" % (len(_END_DATA), _END_DATA)
# What the model writes, in characters, and how long that takes it.
_ANSWER_CHARS = len(json.dumps({"questions": [{"text": q} for q in QUESTIONS]}))
_STREAM_SECONDS = FIRST_TOKEN_SECONDS + _ANSWER_CHARS / CHARS_PER_TOKEN / TOKENS_PER_SECOND
_STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
)


def _whole() -> bytes:
    content = json.dumps({"questions": [{"text": q} for q in QUESTIONS]})
    body = json.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 0,
            "model": "gpt-4o-2024-08-06",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": _USAGE,
        }
    ).encode()
    head = (
        f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


_WHOLE = _whole()


class _StreamingFake(LeanHttp):
    """One request at a time per connection, answered as paced above: a chunk of
    `chunk_chars` characters every `chunk_chars / 4` tokens' time."""

    def __init__(self, chunk_chars: int) -> None:
        super().__init__()
        self._chunks, self._stamped = _plan(chunk_chars)
        self._gap = chunk_chars / CHARS_PER_TOKEN / TOKENS_PER_SECOND

    def request(self, head: bytes, body: bytes) -> None:
        loop = asyncio.get_running_loop()
        if b'"stream": true' in body:
            self.write(_STREAM_HEAD)
            loop.call_later(FIRST_TOKEN_SECONDS, self._next, 0)
        else:
            loop.call_later(_STREAM_SECONDS, self.write, _WHOLE)

    def _next(self, index: int) -> None:
        if not self.connected:
            return
        if index == len(self._chunks):
            self.write(_END)
            return
        if index == self._stamped:
            self.write(_chunk(f' [t={time.monotonic_ns()}]"}}, '))
        else:
            self.write(self._chunks[index])
        asyncio.get_running_loop().call_later(self._gap, self._next, index + 1)


async def _serve(port: int, chunk_chars: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: _StreamingFake(chunk_chars), "127.0.0.1", port, backlog=4096
    )
    async with server:
        await server.serve_forever()


# ---------------------------------------------------------------- the client


async def _first_question_delay(response: Any) -> float | None:
    """Read the stream to its end; how long after the fake wrote the first question its
    `question` event arrived here (ms), from the fake's stamp in the question's text."""
    seen = b""
    delay: float | None = None
    async for data in response.content.iter_any():
        if delay is not None:
            continue
        seen += data
        start = seen.find(b"event: question")
        if start >= 0 and seen.find(b"\n\n", start) >= 0:
            arrived = time.monotonic_ns()
            stamp = STAMP.search(seen)
            delay = (arrived - int(stamp.group(1))) / 1e6 if stamp else None
            if delay is None:
                raise RuntimeError(f"no stamp in the first question: {seen[:300]!r}")
    return delay


async def _client(
    url: str, token: str, mode: str, concurrency: int, seconds: float
) -> dict[str, Any]:
    """Closed loops for `seconds`; for streams, each first question's delay past the fake's."""
    import aiohttp

    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    if mode == "stream":
        headers["Accept"] = "text/event-stream"
    added: list[float] = []
    done = errors = 0
    stop_at = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def loop() -> None:
            nonlocal done, errors
            while time.monotonic() < stop_at:
                payload = {
                    "draftJobId": str(uuid.uuid4()),
                    "jobDescription": DESCRIPTION,
                    "numberOfQuestions": 10,
                }
                try:
                    async with session.post(url, json=payload) as response:
                        if response.status != 200:
                            errors += 1
                            await response.read()
                            continue
                        if mode == "stream":
                            delay = await _first_question_delay(response)
                            if delay is not None:
                                added.append(delay)
                        else:
                            await response.read()
                        done += 1
                except aiohttp.ClientError:
                    errors += 1

        await asyncio.gather(*(loop() for _ in range(concurrency)))
    return {"done": done, "errors": errors, "added_ms": added}


# ---------------------------------------------------------------- the benchmark


@dataclass(frozen=True)
class Round:
    mode: str
    generations: int
    cpu_seconds: float
    errors: int
    added_ms: list[float]

    @property
    def cpu_ms(self) -> float:
        return self.cpu_seconds * 1000 / self.generations if self.generations else float("nan")


async def _round(mode: str, base: str, pid: int, dsn: str, token: str, seconds: float) -> Round:
    client = harness.python_module(
        f"stream-client-{mode}",
        "bench.generation_streamed",
        "client",
        "--url",
        base + PATH,
        "--token",
        token,
        "--mode",
        mode,
        "--concurrency",
        str(CONCURRENCY),
        "--seconds",
        str(seconds),
    )
    rows_before = await harness.count_rows(dsn, "generations")
    cpu_before = cpu_seconds(pid)
    report = await client.json(timeout=seconds + 120)
    await asyncio.sleep(1.0)  # the last ones recorded
    return Round(
        mode=mode,
        generations=await harness.count_rows(dsn, "generations") - rows_before,
        cpu_seconds=cpu_seconds(pid) - cpu_before,
        errors=int(report["errors"]),
        added_ms=[float(value) for value in report["added_ms"]],
    )


def _fake(chunk_chars: int) -> tuple[harness.Process, str]:
    port = harness.free_port()
    process = harness.python_module(
        f"fake-llm-stream-{chunk_chars}",
        "bench.generation_streamed",
        "serve",
        "--port",
        str(port),
        "--chunk-chars",
        str(chunk_chars),
    )
    return process, f"http://127.0.0.1:{port}"


async def run(profile: Profile) -> Result:
    token = harness.token(uuid.uuid4())
    seconds = max(profile.http_seconds, _STREAM_SECONDS * 3)
    # Token by token, as OpenAI streams: the measure. A chunk a question (as a server
    # that batches its tokens would send): for the record, what a stream costs apart
    # from its chunks.
    token_fake, token_url = _fake(CHARS_PER_TOKEN)
    question_fake, question_url = _fake(QUESTION_CHUNK_CHARS)
    rounds: list[Round] = []
    coarse: Round | None = None
    try:
        await wait_listening(token_url, token_fake)
        await wait_listening(question_url, question_fake)
        async with harness.temp_database("question_gen") as dsn, harness.temp_topology() as topo:
            for url in (token_url, question_url):
                env = {
                    "OPENAI_API_KEY": "bench-key",
                    "OPENAI_BASE_URL": url + "/v1",
                    "LLM_TIMEOUT_SECONDS": "30",
                }
                process, base = harness.start_service("question_gen", dsn, topo, **env)
                try:
                    await harness.wait_ready(base, process, 60)
                    measure = partial(_round, base=base, pid=process.pid, dsn=dsn, token=token)
                    for mode in ("json", "stream"):  # warm-up: connections open, paths hot
                        await measure(mode, seconds=_STREAM_SECONDS * 2)
                    if url == question_url:
                        coarse = await measure("stream", seconds=seconds)
                        continue
                    for number in range(profile.rounds):
                        order = ("json", "stream") if number % 2 == 0 else ("stream", "json")
                        for mode in order:
                            rounds.append(await measure(mode, seconds=seconds))
                finally:
                    await process.stop()
    finally:
        await token_fake.stop()
        await question_fake.stop()
    assert coarse is not None
    return _result(rounds, coarse, profile)


def _result(rounds: list[Round], coarse: Round, profile: Profile) -> Result:
    streams = [r for r in rounds if r.mode == "stream"]
    answers = [r for r in rounds if r.mode == "json"]
    added = sorted(value for r in streams for value in r.added_ms)
    p50, p99 = percentile(added, 50), percentile(added, 99)
    stream_cpu = median([r.cpu_ms for r in streams])
    json_cpu = median([r.cpu_ms for r in answers])
    ratio = stream_cpu / json_cpu
    errors = sum(r.errors for r in [*rounds, coarse])
    checks = {
        f"first question p99 added < {BAR_P99_ADDED_MS:g} ms": p99 < BAR_P99_ADDED_MS,
        f"CPU per streamed generation <= {BAR_CPU_RATIO:g}x the JSON call's": ratio
        <= BAR_CPU_RATIO,
        "no errors": errors == 0,
    }
    result = Result(
        name="generation_streamed",
        ours=stream_cpu,
        baseline=json_cpu,
        unit="ms CPU/gen",
        ratio=ratio,
        bar=f"CPU stream/JSON <= {BAR_CPU_RATIO:g}, first question p99 +<{BAR_P99_ADDED_MS:g} ms",
        passed=all(checks.values()),
        details={
            "first_question_added_p50_ms": round(p50, 2),
            "first_question_added_p99_ms": round(p99, 2),
            "streams_measured": len(added),
            "stream_cpu_ms_rounds": [round(r.cpu_ms, 2) for r in streams],
            "json_cpu_ms_rounds": [round(r.cpu_ms, 2) for r in answers],
            "chunks_per_stream": len(_plan(CHARS_PER_TOKEN)[0]) + 1,
            "one_chunk_a_question_stream_cpu_ms": round(coarse.cpu_ms, 2),
            "one_chunk_a_question_ratio": round(coarse.cpu_ms / json_cpu, 2),
            "one_chunk_a_question_added_p99_ms": round(percentile(coarse.added_ms, 99), 2),
            "stream_seconds": round(_STREAM_SECONDS, 2),
            "concurrency": CONCURRENCY,
            "errors": errors,
            "rounds": profile.rounds,
        },
    )
    result.notes.extend(f"missed: {name}" for name, ok in checks.items() if not ok)
    return result


# ---------------------------------------------------------------- entry points


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.generation_streamed")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="the lean streaming fake LLM")
    serve.add_argument("--port", type=int, required=True)
    serve.add_argument("--chunk-chars", type=int, default=CHARS_PER_TOKEN)
    client = commands.add_parser("client", help="closed-loop clients, JSON or streamed")
    client.add_argument("--url", required=True)
    client.add_argument("--token", required=True)
    client.add_argument("--mode", choices=["json", "stream"], required=True)
    client.add_argument("--concurrency", type=int, default=CONCURRENCY)
    client.add_argument("--seconds", type=float, required=True)
    args = parser.parse_args(argv)
    import uvloop

    if args.command == "serve":
        uvloop.run(_serve(args.port, args.chunk_chars))
        return 0
    report = uvloop.run(_client(args.url, args.token, args.mode, args.concurrency, args.seconds))
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
