"""Reading a `text/event-stream` answer as a client does: one event at a time."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

STREAM = {"Accept": "text/event-stream"}


@dataclass(frozen=True)
class Event:
    name: str
    data: dict[str, Any]


async def events(response: httpx.Response) -> AsyncIterator[Event]:
    """The events of a streamed response, each as soon as its blank line has arrived."""
    name, data = "message", list[str]()
    async for line in response.aiter_lines():
        if not line:
            if data:
                yield Event(name, json.loads("\n".join(data)))
            name, data = "message", list[str]()
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())


async def read_all(response: httpx.Response) -> list[Event]:
    return [event async for event in events(response)]
