import time
import uuid

import jwt
import pytest

from services.servicekit.auth import Principal, decode_token, ensure_company, issue_token
from services.servicekit.problems import Problem

SECRET = "unit-test-secret-0123456789-0123456789"


def test_a_valid_token_names_its_company_and_user() -> None:
    company = uuid.uuid4()
    principal = decode_token(issue_token(SECRET, company, user="r@x.io"), SECRET)
    assert principal == Principal(company, "r@x.io")


@pytest.mark.parametrize(
    ("claims", "secret", "detail"),
    [
        (
            {"company_id": str(uuid.uuid4()), "exp": int(time.time()) + 60},
            "wrong-secret-0123456789-0123456789",
            "invalid token",
        ),
        ({"company_id": str(uuid.uuid4()), "exp": int(time.time()) - 60}, SECRET, "expired"),
        ({"company_id": str(uuid.uuid4())}, SECRET, "exp"),
        ({"exp": int(time.time()) + 60}, SECRET, "company_id"),
        ({"company_id": "acme", "exp": int(time.time()) + 60}, SECRET, "not a UUID"),
    ],
)
def test_bad_tokens_are_401_with_a_reason(
    claims: dict[str, object], secret: str, detail: str
) -> None:
    token = jwt.encode(claims, secret, algorithm="HS256")
    with pytest.raises(Problem, match=detail) as caught:
        decode_token(token, SECRET)
    assert caught.value.status == 401


@pytest.mark.filterwarnings("ignore:The HMAC key")
def test_a_token_signed_with_another_algorithm_is_refused() -> None:
    token = jwt.encode(
        {"company_id": str(uuid.uuid4()), "exp": int(time.time()) + 60},
        SECRET,
        algorithm="HS512",
    )
    with pytest.raises(Problem):
        decode_token(token, SECRET)


def test_body_company_must_match_the_token() -> None:
    company = uuid.uuid4()
    principal = Principal(company)
    assert ensure_company(principal, None) == company
    assert ensure_company(principal, company) == company
    with pytest.raises(Problem) as caught:
        ensure_company(principal, uuid.uuid4())
    assert caught.value.status == 403
