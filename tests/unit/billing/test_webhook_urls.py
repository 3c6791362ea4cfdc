"""URL safety is pure: resolution is a parameter, so nothing here touches a network."""

import re

import pytest

from services.billing.webhooks.urls import (
    UnsafeWebhookUrl,
    address_refusal,
    parse_allowed_hosts,
    parse_target,
    vet_url,
)


class FakeResolver:
    """A resolver answering from a table, remembering what it was asked."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.calls: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        return self.table.get(host, [])


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("fd12::1", "private"),
        ("169.254.169.254", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "not a public address"),
        ("::ffff:10.0.0.1", "embeds 10.0.0.1"),
        ("::ffff:127.0.0.1", "embeds 127.0.0.1"),
        ("2002:7f00:1::", "embeds 127.0.0.1"),
        ("fe80::1%eth0", "link-local"),
    ],
)
def test_internal_addresses_are_refused_with_the_reason(address: str, why: str) -> None:
    refusal = address_refusal(address)
    assert refusal is not None
    assert why in refusal


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    assert address_refusal(address) is None


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("file:///etc/passwd", "scheme"),
        ("ftp://example.com/", "scheme"),
        ("gopher://example.com/", "scheme"),
        ("example.com/hook", "scheme"),
        ("http:///nohost", "no host"),
        ("http://user:pw@example.com/", "credentials"),
        ("http://example.com:99999/", "not a valid URL"),
        ("http://exa mple.com/", "spaces"),
        ("http://example.com/" + "a" * 2000, "longer than"),
    ],
)
def test_urls_that_cannot_be_webhooks_are_refused(url: str, why: str) -> None:
    with pytest.raises(UnsafeWebhookUrl, match=why):
        parse_target(url)


def test_a_target_names_host_and_default_port() -> None:
    assert parse_target("https://Hooks.Example.com./x").host == "hooks.example.com"
    assert parse_target("https://hooks.example.com/x").port == 443
    assert parse_target("http://[2606:4700::1111]:8080/").host == "2606:4700::1111"


@pytest.mark.parametrize(
    "url",
    ["http://169.254.169.254/", "http://10.0.0.1/", "http://localhost/", "http://[::1]:8000/"],
)
async def test_the_contract_s_examples_are_refused(url: str) -> None:
    table = {"localhost": ["127.0.0.1", "::1"], "169.254.169.254": ["169.254.169.254"]}
    table |= {"10.0.0.1": ["10.0.0.1"], "::1": ["::1"]}
    with pytest.raises(UnsafeWebhookUrl):
        await vet_url(url, frozenset(), FakeResolver(table))


async def test_a_name_is_refused_if_any_address_it_resolves_to_is_internal() -> None:
    resolve = FakeResolver({"mixed.example": ["93.184.216.34", "10.1.2.3"]})
    with pytest.raises(UnsafeWebhookUrl, match=re.escape("10.1.2.3 is a private address")):
        await vet_url("https://mixed.example/hook", frozenset(), resolve)


async def test_a_name_that_does_not_resolve_is_refused() -> None:
    with pytest.raises(UnsafeWebhookUrl, match="does not resolve"):
        await vet_url("https://nowhere.example/hook", frozenset(), FakeResolver({}))


async def test_a_public_name_passes_and_is_pinned_to_the_address_checked() -> None:
    resolve = FakeResolver({"hooks.example": ["93.184.216.34"]})
    vetted = await vet_url("https://hooks.example/hook", frozenset(), resolve)
    assert vetted.address == "93.184.216.34"
    assert vetted.target.host == "hooks.example"


async def test_allowed_hosts_skip_the_address_check_and_resolve_nothing() -> None:
    resolve = FakeResolver({})
    allowed = parse_allowed_hosts(" 127.0.0.1, Receiver.Local ,")
    assert allowed == {"127.0.0.1", "receiver.local"}
    vetted = await vet_url("http://127.0.0.1:9000/hook", allowed, resolve)
    assert vetted.address is None
    await vet_url("http://receiver.local/hook", allowed, resolve)
    assert resolve.calls == []
    with pytest.raises(UnsafeWebhookUrl):
        await vet_url("file:///etc/passwd", allowed, resolve)
