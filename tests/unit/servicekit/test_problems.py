"""Domain errors become problem documents in one place, by the table a service declares."""

from typing import Any

import asyncpg
from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.servicekit.problems import (
    PROBLEM_JSON,
    ErrorMap,
    ProblemOf,
    documented,
    install_problem_handlers,
    invalid,
    nul_fields,
)


class Unavailable(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__("upstream unavailable")
        self.retry_after = retry_after


class Refused(Unavailable):
    """A narrower error: its own entry wins over its base class's."""


class Taken(Exception):
    def __init__(self, owner: str) -> None:
        super().__init__("already taken")
        self.owner = owner


ERRORS: ErrorMap = {
    Unavailable: ProblemOf[Unavailable](
        503, "upstream unavailable", headers=lambda exc: {"Retry-After": str(exc.retry_after)}
    ),
    Refused: ProblemOf[Refused](503, "upstream refused us", detail=lambda _: "refused"),
    Taken: ProblemOf[Taken](409, "taken; `owner` names who", members=lambda e: {"owner": e.owner}),
}


def client_raising(error: Exception) -> TestClient:
    app = FastAPI()
    install_problem_handlers(app, ERRORS)

    @app.get("/")
    def fail() -> None:
        raise error

    return TestClient(app, raise_server_exceptions=False)


def test_a_declared_error_answers_its_status_headers_and_members() -> None:
    unavailable = client_raising(Unavailable(7)).get("/")
    taken = client_raising(Taken("job-1")).get("/")

    assert unavailable.status_code == 503
    assert unavailable.headers["retry-after"] == "7"
    assert unavailable.headers["content-type"] == PROBLEM_JSON
    assert unavailable.json()["detail"] == "upstream unavailable"
    assert taken.status_code == 409
    assert taken.json() == {
        "type": "about:blank",
        "title": "Conflict",
        "status": 409,
        "detail": "already taken",
        "owner": "job-1",
    }


def test_the_most_specific_entry_answers_a_subclass() -> None:
    refused = client_raising(Refused(3)).get("/")
    assert refused.json()["detail"] == "refused"
    assert "retry-after" not in refused.headers


def test_an_undeclared_error_is_a_500_without_its_message() -> None:
    answer = client_raising(RuntimeError("secret detail")).get("/")
    assert answer.status_code == 500
    assert "secret" not in answer.text


def test_the_same_table_documents_the_route() -> None:
    responses = documented(ERRORS, {401: "no valid token"})
    assert sorted(responses) == [401, 409, 422, 503]
    assert responses[503]["description"] == "upstream unavailable; upstream refused us"
    assert PROBLEM_JSON in responses[409]["content"]


def test_every_status_gets_its_standard_title_from_the_shared_table() -> None:
    """402 (budget exceeded) and 429 need no route supplying its own `title`."""
    from services.servicekit.problems import problem_response

    for status, title in (
        (402, "Payment Required"),
        (429, "Too Many Requests"),
        (418, "I'm a Teapot"),
    ):
        body = problem_response(status, "x").body
        assert f'"title":"{title}"' in bytes(body).decode()


def test_invalid_names_the_field_and_where_it_is() -> None:
    problem = invalid("period", "must be YYYY-MM", "path")
    assert problem.status == 422
    assert problem.detail == "invalid request: period: must be YYYY-MM"
    assert problem.extra == {
        "errors": [{"field": "period", "in": "path", "message": "must be YYYY-MM"}]
    }


def test_nul_fields_are_named_as_validation_names_fields() -> None:
    body = {
        "title": "a\x00b",
        "description": "clean",
        "tags": ["ok", "bad\x00"],
        "team": {"lead": "x\x00", "size": 3},
        "bad\x00key": "v",
        "again": ["\x00", "\x00"],
    }
    assert nul_fields(body) == ["title", "tags", "team.lead", "bad\\u0000key", "again"]
    assert nul_fields("\x00") == ["body"]
    assert nul_fields({"title": "clean", "n": 1, "none": None}) == []


def client_storing(path: str = "/items/{name}") -> TestClient:
    """An app whose route reads its body, then meets text PostgreSQL cannot store."""
    app = FastAPI()
    install_problem_handlers(app)

    @app.post(path)
    def store(name: str, body: dict[str, Any], note: str | None = None) -> None:
        raise asyncpg.exceptions.CharacterNotInRepertoireError("invalid byte sequence: 0x00")

    return TestClient(app, raise_server_exceptions=False)


def test_a_nul_in_the_body_is_a_422_naming_the_field() -> None:
    answer = client_storing().post("/items/a", json={"title": "ok", "details": {"note": "x\x00"}})
    assert answer.status_code == 422
    problem = answer.json()
    assert problem["errors"] == [
        {
            "field": "details.note",
            "in": "body",
            "message": "must not contain NUL (U+0000) characters",
        }
    ]
    assert "details.note" in problem["detail"]


def test_a_nul_in_a_query_or_path_parameter_is_named_there() -> None:
    answer = client_storing().post("/items/a%00b", params={"note": "n\x00"}, json={"t": "ok"})
    assert answer.status_code == 422
    assert [(error["field"], error["in"]) for error in answer.json()["errors"]] == [
        ("name", "path"),
        ("note", "query"),
    ]


def test_a_nul_found_nowhere_names_the_body() -> None:
    answer = client_storing().post("/items/a", json={"title": "clean"})
    assert answer.status_code == 422
    assert [error["field"] for error in answer.json()["errors"]] == ["body"]
