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
            {"company_id": str(uuid.uuid4()), "exp": 60},
            "wrong-secret-0123456789-0123456789",
            "invalid token",
        ),
        ({"company_id": str(uuid.uuid4()), "exp": -60}, SECRET, "expired"),
        ({"company_id": str(uuid.uuid4())}, SECRET, "exp"),
        ({"exp": 60}, SECRET, "company_id"),
        ({"company_id": "acme", "exp": 60}, SECRET, "not a UUID"),
    ],
)
def test_bad_tokens_are_401_with_a_reason(
    claims: dict[str, object], secret: str, detail: str
) -> None:
    """`exp` is given relative to now, so the cases mean the same whenever they run."""
    if "exp" in claims:
        claims = {**claims, "exp": int(time.time()) + int(str(claims["exp"]))}
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


def test_a_remembered_token_still_expires() -> None:
    company = uuid.uuid4()
    expires_at = int(time.time()) + 60
    token = jwt.encode({"company_id": str(company), "exp": expires_at}, SECRET, algorithm="HS256")
    verified = decode_token(token, SECRET, clock=lambda: expires_at - 1)
    assert verified.company_id == company  # verified and remembered
    with pytest.raises(Problem, match="expired"):
        decode_token(token, SECRET, clock=lambda: expires_at)


def test_a_remembered_token_is_not_valid_under_another_secret() -> None:
    token = issue_token(SECRET, uuid.uuid4())
    decode_token(token, SECRET)
    with pytest.raises(Problem, match="invalid token"):
        decode_token(token, "another-secret-0123456789-0123456789")
