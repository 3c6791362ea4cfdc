"""The baseline HTTP service: one bare FastAPI endpoint, served exactly as our services are.

`python -m bench.bare_app --port P`: uvicorn with uvloop and httptools, one
process, no access log (the settings of `services/servicekit/serve.py`). The
endpoint reads the JSON body and answers a small JSON document: what any
FastAPI endpoint costs before doing any work.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from typing import Any

import uvicorn
from fastapi import FastAPI

app = FastAPI()


@app.post("/api/ai/generate-questions")
async def generate_questions(body: dict[str, Any]) -> dict[str, Any]:
    return {"generationId": str(uuid.uuid4()), "questionCount": body.get("numberOfQuestions")}


@app.post("/api/jobs", status_code=201)
async def create_job(body: dict[str, Any]) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "title": body.get("title")}


@app.get("/readyz")
async def readyz() -> dict[str, str]:
    return {"status": "ready"}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bare_app")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_config=None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
