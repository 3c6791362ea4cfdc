"""Write the events' JSON Schema and the AsyncAPI document: `python -m contracts.generate`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from contracts.asyncapi import asyncapi_document
from contracts.events import BILLING_EVENT_TYPES, EVENT_TYPES

SCHEMA_DIR = Path(__file__).parent / "schemas"


def documents() -> dict[str, str]:
    """File name to content of every generated document."""
    docs: dict[str, str] = {}
    for routing_key, model in {**EVENT_TYPES, **BILLING_EVENT_TYPES}.items():
        schema: dict[str, Any] = model.model_json_schema(by_alias=True)
        schema["$id"] = f"urn:question-billing:event:{routing_key}"
        docs[f"{routing_key}.schema.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    docs["asyncapi.json"] = json.dumps(asyncapi_document(), indent=2, sort_keys=True) + "\n"
    return docs


def main() -> int:
    SCHEMA_DIR.mkdir(exist_ok=True)
    for name, text in documents().items():
        (SCHEMA_DIR / name).write_text(text)
        print(f"wrote contracts/schemas/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
