"""An HTTP/1.1 load generator in a process of its own: `python -m bench.load MODE SPEC ...`.

Plain asyncio streams on uvloop with keep-alive connections, because a general
HTTP client spends more CPU per request than the servers it measures (on a
2-core machine the generator would become the bottleneck).

- `closed SPEC --concurrency C --seconds S`: C connections, each sending the next
  request when the previous answer arrived. Prints one JSON line: requests,
  errors, seconds, p50_ms, p99_ms.
- `steady SPEC --rate R --seconds S --out FILE`: an open loop, request i sent at
  start + i/R whatever the answers; writes each answer's status, wall-clock time
  (`time.time()` when the response was complete) and `generationId` to FILE.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import uvloop


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    request: bytes

    @classmethod
    def from_spec(cls, path: str) -> Target:
        spec = json.loads(Path(path).read_text())
        url = urlsplit(spec["url"])
        body = spec["body"].encode()
        headers = {
            "Host": f"{url.hostname}:{url.port}",
            "Content-Length": str(len(body)),
            "Connection": "keep-alive",
            **spec["headers"],
        }
        head = f"POST {url.path or '/'} HTTP/1.1\r\n" + "".join(
            f"{name}: {value}\r\n" for name, value in headers.items()
        )
        return cls(url.hostname or "127.0.0.1", url.port or 80, head.encode() + b"\r\n" + body)


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, target: Target) -> Connection:
        reader, writer = await asyncio.open_connection(target.host, target.port)
        return cls(reader, writer)

    async def send(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        body = await self.reader.readexactly(length) if length else b""
        return status, body

    def close(self) -> None:
        self.writer.close()

    def closed_by_server(self) -> bool:
        """Whether the server closed it (its FIN already read by the event loop)."""
        return self.reader.at_eof() or self.writer.is_closing()


# Idle connections older than this are closed, not reused: shorter than the servers'
# keep-alive (uvicorn's default is 5 s; ours is HTTP_KEEP_ALIVE_SECONDS), as real clients
# do (httpx's keepalive_expiry is 5 s), so a request is never sent on a connection the
# server is closing at that very moment.
KEEPALIVE_EXPIRY = 4.0


class Pool:
    """Idle keep-alive connections, the most recently used first.

    Before one is reused it is checked, as HTTP clients do: a connection the
    server closed while it sat idle, or idle longer than `expiry`, is dropped and
    a fresh one opened. (Reused unchecked, a connection opened during a spike and
    left idle past the server's keep-alive timeout answers the next request with
    an empty read: `IncompleteReadError`.)
    """

    def __init__(self, target: Target, *, expiry: float = KEEPALIVE_EXPIRY) -> None:
        self.target = target
        self.expiry = expiry
        self._idle: list[tuple[Connection, float]] = []

    async def fill(self, count: int) -> None:
        for _ in range(count):
            self.release(await Connection.open(self.target))

    async def acquire(self) -> Connection:
        while self._idle:
            conn, since = self._idle.pop()
            if not conn.closed_by_server() and time.monotonic() - since < self.expiry:
                return conn
            conn.close()
        return await Connection.open(self.target)

    def release(self, conn: Connection) -> None:
        self._idle.append((conn, time.monotonic()))

    def close(self) -> None:
        for conn, _ in self._idle:
            conn.close()
        self._idle.clear()


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile; `pct` in 0..100."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return float(ordered[rank - 1])


def load_report(
    requests: int, errors: int, seconds: float, latencies: Sequence[float], **more: Any
) -> dict[str, Any]:
    """The JSON line a load process prints (and `harness.LoadResult.of` reads)."""
    return {
        "requests": requests,
        "errors": errors,
        "seconds": seconds,
        **more,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
    }


async def closed_loop(target: Target, concurrency: int, seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    connections = [await Connection.open(target) for _ in range(concurrency)]
    started = time.perf_counter()
    deadline = started + seconds

    async def worker(conn: Connection) -> None:
        nonlocal errors
        while True:
            sent = time.perf_counter()
            if sent >= deadline:
                return
            try:
                status, _ = await conn.send(target.request)
            except (OSError, asyncio.IncompleteReadError):
                errors += 1
                conn.close()
                conn = await Connection.open(target)
                continue
            latencies.append(time.perf_counter() - sent)
            if status >= 400:
                errors += 1

    await asyncio.gather(*(worker(conn) for conn in connections))
    elapsed = time.perf_counter() - started
    for conn in connections:
        conn.close()
    return load_report(len(latencies), errors, elapsed, latencies)


async def steady(
    target: Target, rate: float, seconds: float, records: list[dict[str, Any]]
) -> dict[str, Any]:
    pool = Pool(target)
    await pool.fill(8)
    latencies: list[float] = []
    late = 0

    async def one() -> None:
        conn = await pool.acquire()
        sent = time.perf_counter()
        try:
            status, body = await conn.send(target.request)
        except (OSError, asyncio.IncompleteReadError) as exc:
            records.append({"status": 0, "error": repr(exc)})
            conn.close()
            return
        answered = time.time()
        latencies.append(time.perf_counter() - sent)
        pool.release(conn)
        record: dict[str, Any] = {"status": status, "at": answered}
        if status == 200:
            record["id"] = json.loads(body)["generationId"]
        records.append(record)

    total = int(rate * seconds)
    tasks: list[asyncio.Task[None]] = []
    started = time.perf_counter()
    for i in range(total):
        due = started + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -0.01:
            late += 1
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    pool.close()
    errors = sum(1 for record in records if record["status"] != 200)
    return load_report(len(records), errors, elapsed, latencies, late_sends=late)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load")
    parser.add_argument("mode", choices=["closed", "steady"])
    parser.add_argument("spec")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    target = Target.from_spec(args.spec)
    if args.mode == "closed":
        result = uvloop.run(closed_loop(target, args.concurrency, args.seconds))
    else:
        assert args.out is not None, "--out is required in steady mode"
        records: list[dict[str, Any]] = []
        result = uvloop.run(steady(target, args.rate, args.seconds, records))
        args.out.write_text(json.dumps(records))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
