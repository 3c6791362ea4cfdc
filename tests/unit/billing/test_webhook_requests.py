"""The POST goes to the address that was vetted, naming the host it was meant for."""

from services.billing.webhooks.deliver import pinned_request
from services.billing.webhooks.urls import Target, Vetted


def test_a_public_host_is_reached_at_its_vetted_address_with_its_name_kept() -> None:
    target = Target("https://hooks.example:8443/in?x=1", "https", "hooks.example", 8443)
    request = pinned_request(Vetted(target, "93.184.216.34"), b"{}", {"X-A": "1"})
    assert request.url.host == "93.184.216.34"
    assert request.url.port == 8443
    assert request.url.raw_path == b"/in?x=1"
    assert request.headers["Host"] == "hooks.example:8443"
    assert request.extensions["sni_hostname"] == "hooks.example"
    assert request.headers["X-A"] == "1"
    assert request.content == b"{}"


def test_an_ipv6_address_is_bracketed_and_plain_http_needs_no_sni() -> None:
    target = Target("http://hooks.example/in", "http", "hooks.example", 80)
    request = pinned_request(Vetted(target, "2606:4700::1111"), b"", {})
    assert request.url.host == "2606:4700::1111"
    assert str(request.url).startswith("http://[2606:4700::1111]/in")
    assert request.headers["Host"] == "hooks.example"
    assert "sni_hostname" not in request.extensions


def test_an_allowed_host_is_reached_by_name() -> None:
    target = Target("http://127.0.0.1:9000/in", "http", "127.0.0.1", 9000)
    request = pinned_request(Vetted(target, None), b"", {})
    assert str(request.url) == "http://127.0.0.1:9000/in"
