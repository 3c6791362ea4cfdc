"""Bearer JWT (HS256) naming the company a request acts for."""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any
from uuid import UUID

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.servicekit.problems import Problem

ALGORITHM = "HS256"

bearer = HTTPBearer(auto_error=False, description="JWT (HS256) with a `company_id` claim")


@dataclass(frozen=True)
class Principal:
    company_id: UUID
    user: str | None = None
    roles: frozenset[str] = frozenset()


def _unauthorized(detail: str) -> Problem:
    return Problem(401, detail, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


def decode_token(token: str, secret: str, *, clock: Callable[[], float] = time.time) -> Principal:
    """The token's principal; a 401 problem for anything short of a valid, current token.

    A browser sends the same token with every request, so what the signature
    proves is remembered; only the expiry is checked again each time, by `clock`.
    """
    principal, expires_at = _verify(token, secret)
    if expires_at <= clock():
        raise _unauthorized("token expired")
    return principal


@lru_cache(maxsize=4096)
def _verify(token: str, secret: str) -> tuple[Principal, float]:
    """Signature and claims; raises (and so caches nothing) for a bad token."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"require": ["exp"]}
        )
    except jwt.ExpiredSignatureError as exc:
        raise _unauthorized("token expired") from exc
    except jwt.InvalidTokenError as exc:
        raise _unauthorized(f"invalid token: {exc}") from exc
    company = claims.get("company_id")
    if not company:
        raise _unauthorized("token has no company_id claim")
    try:
        company_id = UUID(str(company))
    except ValueError as exc:
        raise _unauthorized("token company_id is not a UUID") from exc
    sub = claims.get("sub")
    roles = claims.get("roles", [])
    if not isinstance(roles, list) or not all(isinstance(role, str) for role in roles):
        raise _unauthorized("token roles claim is not an array of strings")
    principal = Principal(
        company_id=company_id, user=str(sub) if sub is not None else None, roles=frozenset(roles)
    )
    return principal, float(claims["exp"])


def issue_token(
    secret: str,
    company_id: UUID,
    *,
    user: str | None = None,
    roles: Iterable[str] = (),
    ttl_seconds: int = 3600,
) -> str:
    claims: dict[str, Any] = {"company_id": str(company_id), "exp": int(time.time()) + ttl_seconds}
    if user is not None:
        claims["sub"] = user
    if roles:
        claims["roles"] = sorted(set(roles))
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


async def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise _unauthorized("missing bearer token")
    secret: str = request.app.state.settings.auth_jwt_secret.get_secret_value()
    return decode_token(credentials.credentials, secret)


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]

# What a route taking `CurrentPrincipal` and a body `companyId` may answer (OpenAPI).
AUTHENTICATED = {401: "no valid token", 403: "companyId differs from the token's"}


def require_role(role: str) -> Callable[[Principal], Coroutine[Any, Any, Principal]]:
    """A dependency: the caller's principal, or 403 when its token lacks `role`.

    `Annotated[Principal, Depends(require_role("billing:admin"))]` in a route's signature.
    """

    async def with_role(principal: CurrentPrincipal) -> Principal:
        if role not in principal.roles:
            raise Problem(403, f"this request needs the role {role!r}, which the token lacks")
        return principal

    return with_role


def ensure_company(principal: Principal, claimed: UUID | None) -> UUID:
    """A body's `companyId` is optional and must equal the token's."""
    if claimed is not None and claimed != principal.company_id:
        raise Problem(403, "companyId does not match the token's company")
    return principal.company_id
