import asyncio
import time
import uuid

import jwt
import pytest

from services.servicekit.auth import Principal, decode_token, issue_token, require_role
from services.servicekit.problems import Problem

SECRET = "unit-test-secret-0123456789-0123456789"


def test_roles_come_from_the_roles_claim_and_absent_means_none() -> None:
    company = uuid.uuid4()
    assert decode_token(issue_token(SECRET, company), SECRET).roles == frozenset()
    token = issue_token(SECRET, company, roles=["billing:admin", "platform:admin"])
    assert decode_token(token, SECRET).roles == {"billing:admin", "platform:admin"}


@pytest.mark.parametrize("roles", ["billing:admin", [1, 2], {"a": 1}])
def test_a_roles_claim_that_is_not_a_list_of_strings_is_a_401(roles: object) -> None:
    claims = {"company_id": str(uuid.uuid4()), "exp": int(time.time()) + 60, "roles": roles}
    with pytest.raises(Problem, match="roles") as caught:
        decode_token(jwt.encode(claims, SECRET, algorithm="HS256"), SECRET)
    assert caught.value.status == 401


def test_require_role_passes_the_principal_or_answers_403() -> None:
    check = require_role("billing:admin")
    admin = Principal(uuid.uuid4(), "a@x.io", frozenset({"billing:admin"}))
    assert asyncio.run(check(admin)) is admin
    for lacking in (Principal(uuid.uuid4()), Principal(uuid.uuid4(), None, frozenset({"x"}))):
        with pytest.raises(Problem, match="billing:admin") as caught:
            asyncio.run(check(lacking))
        assert caught.value.status == 403
