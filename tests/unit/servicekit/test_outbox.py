"""Composing the business statement with its event: numbered by the helper, checked."""

import pytest

from services.servicekit.outbox import _composed

INSERT = "INSERT INTO jobs (id, title) VALUES ($1, $2) RETURNING id"


def test_the_event_parameters_follow_the_statements_own() -> None:
    composed = _composed(INSERT, 2)
    assert "VALUES ($1, $2)" in composed
    assert "SELECT $3::uuid, $4::text, $5::jsonb, $6::text, $7::text, $8::text" in composed


@pytest.mark.parametrize("count", [1, 3])
def test_arguments_that_do_not_match_the_statement_are_refused(count: int) -> None:
    with pytest.raises(ValueError, match=r"uses parameters \[1, 2\]"):
        _composed(INSERT, count)


def test_statements_ahead_come_first_and_share_the_arguments() -> None:
    ahead = "marked AS (UPDATE drafts SET used = true WHERE id = $3 RETURNING id)"
    composed = _composed(INSERT, 3, ahead)
    assert composed.lstrip().startswith(f"WITH {ahead},\nwritten AS (INSERT")
    assert "SELECT $4::uuid" in composed
    with pytest.raises(ValueError, match=r"uses parameters \[1, 2, 3\]"):
        _composed(INSERT, 2, ahead)
