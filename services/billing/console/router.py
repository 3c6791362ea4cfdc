"""`GET /billing` and its assets, each answered with the console's security headers."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Final

from fastapi import APIRouter
from fastapi.responses import Response

from services.servicekit.problems import Problem

router = APIRouter(include_in_schema=False)

# The page runs only its own script and style; it fetches only this service's API. No inline
# script or style anywhere, so an API value that slipped into the markup could not run.
CONTENT_SECURITY_POLICY: Final = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)

SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    # The token lives in the fragment, which browsers never send; no-referrer keeps even the
    # page's path out of other sites' logs.
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}

# The assets, by the name the page asks for; nothing else under static/ is served.
ASSETS: Final = {
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
PAGE: Final = "console.html"


@cache
def _read(name: str) -> bytes:
    return resources.files(__package__).joinpath("static", name).read_bytes()


def _answer(name: str, media_type: str, cache_control: str) -> Response:
    return Response(
        _read(name),
        media_type=media_type,
        headers={**SECURITY_HEADERS, "Cache-Control": cache_control},
    )


@router.get("/billing")
def console_page() -> Response:
    """The console. The token arrives in the fragment, which never reaches the server."""
    return _answer(PAGE, "text/html; charset=utf-8", "no-store")


@router.get("/billing/assets/{name}")
def console_asset(name: str) -> Response:
    media_type = ASSETS.get(name)
    if media_type is None:
        raise Problem(404, "no such asset")
    return _answer(name, media_type, "no-cache")
