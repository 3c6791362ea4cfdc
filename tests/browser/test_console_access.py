"""The console's token: taken from the fragment, kept out of every URL, refused when stale."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from services.billing.console.router import CONTENT_SECURITY_POLICY
from services.servicekit.auth import issue_token
from tests.browser.conftest import Console, Watched
from tests.integration.billing.conftest import record
from tests.support.auth import token
from tests.support.events import generated

pytestmark = pytest.mark.browser

DATA_TESTIDS = ("period-spend", "budget-remaining", "daily-chart", "jobs-table", "drafts-waiting")


async def test_the_page_and_its_assets_carry_strict_headers(console: Console) -> None:
    for path in (
        "/billing",
        "/billing/assets/console.js",
        "/billing/assets/console.css",
        "/billing/assets/favicon.svg",
    ):
        response = await console.stack.billing.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert "script-src 'self'" in CONTENT_SECURITY_POLICY
        assert "unsafe-inline" not in CONTENT_SECURITY_POLICY
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
    page = await console.stack.billing.get("/billing")
    assert page.headers["content-type"].startswith("text/html")
    assert "<script>" not in page.text, "no inline script: the policy would refuse it"
    assert (await console.stack.billing.get("/billing/assets/../main.py")).status_code == 404
    assert (await console.stack.billing.get("/billing/assets/console.html")).status_code == 404


async def test_the_token_leaves_the_address_bar_and_never_enters_a_url(
    console: Console, watched: Watched, company: UUID
) -> None:
    await record(console.stack, generated(company, questions=30))
    jwt = token(company)

    await watched.page.goto(console.url(jwt))
    await watched.ready()

    assert watched.page.url == f"{console.base_url}/billing"
    assert await watched.page.evaluate("window.location.hash") == ""
    assert await watched.text("period-spend") == "$0.3000"
    await watched.testid("csv-download").click()
    await watched.page.wait_for_function(
        "document.getElementById('csv-status').textContent.length > 0"
    )
    # Reloaded, the page finds the token in sessionStorage: the address stays clean.
    await watched.page.reload()
    await watched.ready()
    assert watched.page.url == f"{console.base_url}/billing"
    assert await watched.text("period-spend") == "$0.3000"

    api_requests = [url for url in watched.requests if "/api/billing/" in url]
    assert len(api_requests) >= 6, watched.requests
    for url in watched.requests:
        assert jwt not in url, url
        assert "token" not in url.lower(), url
    href = await watched.testid("csv-download").get_attribute("href")
    assert href is not None
    assert jwt not in href
    assert "token" not in href
    assert watched.errors == []


async def test_an_expired_token_shows_the_message_and_no_data(
    console: Console, watched: Watched, company: UUID
) -> None:
    await record(console.stack, generated(company, questions=30))

    await watched.page.goto(console.url(token(company, ttl_seconds=-60)))

    notice = watched.testid("auth-message")
    await notice.wait_for(state="visible")
    assert "expired" in (await notice.inner_text()).lower()
    for name in DATA_TESTIDS:
        assert await watched.testid(name).count() == 0, name
    assert "0.3000" not in await watched.page.content()
    assert not [url for url in watched.requests if "/api/" in url], "nothing asked of the API"
    assert watched.page.url == f"{console.base_url}/billing"
    assert await watched.page.evaluate("sessionStorage.length") == 0
    assert watched.errors == []


async def test_a_token_the_service_refuses_shows_the_message_and_no_data(
    console: Console, watched: Watched, company: UUID
) -> None:
    await record(console.stack, generated(company, questions=30))
    # Current by its own claims, but signed with another secret: only the API can tell.
    forged = issue_token("another-secret-0123456789-0123456789", company, ttl_seconds=600)

    await watched.page.goto(console.url(forged))

    notice = watched.testid("auth-message")
    await notice.wait_for(state="visible")
    assert "did not accept" in await notice.inner_text()
    for name in DATA_TESTIDS:
        assert await watched.testid(name).count() == 0, name
    assert "0.3000" not in await watched.page.content()
    assert await watched.page.evaluate("sessionStorage.length") == 0
    assert watched.errors == []


async def test_no_token_says_how_to_open_the_page(console: Console, watched: Watched) -> None:
    await watched.page.goto(f"{console.base_url}/billing")

    notice = watched.testid("auth-message")
    await notice.wait_for(state="visible")
    assert "#token=" in await notice.inner_text()
    assert await watched.testid("period-spend").count() == 0
    assert watched.errors == []


async def test_hostile_values_render_as_text(
    console: Console, watched: Watched, company: UUID
) -> None:
    hostile = "<img src=x onerror=alert(1)>"
    script = "<script>alert(2)</script>"
    now = datetime.now(UTC)
    await record(
        console.stack,
        generated(company, draft=hostile, questions=10, at=now - timedelta(minutes=5)),
        generated(company, draft=script, questions=20, at=now - timedelta(days=3)),
        generated(uuid.uuid4(), draft="another company's", questions=10),
    )

    await watched.page.goto(console.url(token(company)))
    await watched.ready()

    draft_cells = watched.page.locator("[data-testid=draft-row] td.id")
    shown = set(await draft_cells.all_inner_texts())
    assert hostile in shown
    assert script in shown
    assert await watched.page.locator("main img").count() == 0
    assert await watched.page.locator("main script").count() == 0
    assert watched.dialogs == []
    assert watched.errors == []
    await watched.screenshot("hostile")


async def test_a_link_of_another_company_in_the_same_tab_shows_that_company_only(
    console: Console, watched: Watched, company: UUID
) -> None:
    """Only the fragment changes, so the browser does not load the page again: the page
    must follow the new token, and never show one company's figures under another's."""
    other = uuid.uuid4()
    await record(
        console.stack,
        generated(company, questions=30, draft="draft-of-a"),
        generated(other, questions=10, draft="draft-of-b"),
    )
    await watched.page.goto(console.url(token(company)))
    await watched.ready()
    assert await watched.text("period-spend") == "$0.3000"

    theirs = token(other)
    await watched.page.goto(console.url(theirs))  # the same document, a new fragment
    await watched.page.wait_for_function(
        "id => document.getElementById('company').textContent.includes(id)", arg=str(other)
    )
    await watched.ready()
    await watched.screenshot("another-company")

    assert await watched.text("period-spend") == "$0.1000"
    assert set(await watched.page.locator("[data-testid=draft-row] td.id").all_inner_texts()) == {
        "draft-of-b"
    }
    assert "draft-of-a" not in await watched.page.content()
    assert watched.page.url == f"{console.base_url}/billing"
    stored = await watched.page.evaluate("sessionStorage.getItem('billing.console.token')")
    assert stored == theirs
    assert watched.errors == []


async def test_an_empty_token_in_a_new_fragment_signs_out(
    console: Console, watched: Watched, company: UUID
) -> None:
    await record(console.stack, generated(company, questions=30))
    await watched.page.goto(console.url(token(company)))
    await watched.ready()

    await watched.page.goto(f"{console.base_url}/billing#token=")

    notice = watched.testid("auth-message")
    await notice.wait_for(state="visible")
    assert "#token=" in await notice.inner_text()
    assert "0.3000" not in await watched.page.content()
    assert await watched.page.evaluate("sessionStorage.length") == 0
    assert watched.errors == []
