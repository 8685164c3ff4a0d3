"""Webhook URLs: private, loopback and link-local targets are refused at submission, naming the field.

Literal addresses go through the real resolver (getaddrinfo answers a literal without a DNS query),
so these exercise the same path a name does.
"""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from image_model_domain.webhooks import WebhookForbidden, webhook_addresses, webhook_url_check

PRIVATE = [
    "127.0.0.1",  # loopback
    "127.8.9.10",  # all of 127/8 is loopback
    "10.1.2.3",  # RFC 1918
    "172.16.0.1",
    "172.31.255.254",
    "192.168.1.1",
    "169.254.169.254",  # link-local: cloud metadata services live here
    "100.64.0.1",  # carrier-grade NAT (RFC 6598)
    "0.0.0.0",
    "[::1]",  # IPv6 loopback
    "[::]",
    "[fc00::1]",  # unique local (RFC 4193)
    "[fd12:3456::1]",
    "[fe80::1]",  # link-local
    "[::ffff:127.0.0.1]",  # IPv4-mapped: loopback by another spelling
    "[::ffff:10.0.0.1]",
]
PUBLIC = ["8.8.8.8", "172.32.0.1", "[2001:4860:4860::8888]", "[::ffff:8.8.8.8]"]


@pytest.fixture(autouse=True)
def private_refused(settings) -> None:  # noqa: ANN001
    settings.WEBHOOK_ALLOW_PRIVATE = False


@pytest.mark.parametrize("host", PRIVATE)
def test_a_private_loopback_or_link_local_target_is_refused_naming_the_field(host: str) -> None:
    with pytest.raises(ValidationError) as raised:
        webhook_url_check(f"https://{host}:8443/hook")
    assert list(raised.value.message_dict) == ["webhook_url"]
    assert "private or loopback" in raised.value.message_dict["webhook_url"][0]


@pytest.mark.parametrize("host", PUBLIC)
def test_a_public_address_is_accepted(host: str) -> None:
    webhook_url_check(f"https://{host}/hook")


def test_localhost_resolves_to_loopback_and_is_refused() -> None:
    with pytest.raises(ValidationError, match="private or loopback"):
        webhook_url_check("http://localhost/hook")


def test_one_private_answer_among_public_ones_refuses_the_name() -> None:
    answers = [(0, 0, 0, "", ("8.8.8.8", 443)), (0, 0, 0, "", ("10.0.0.5", 443))]
    with pytest.raises(WebhookForbidden):
        webhook_addresses("mixed.example", 443, resolve=lambda *args, **kwargs: answers)


def test_with_private_targets_allowed_they_pass(settings) -> None:  # noqa: ANN001
    settings.WEBHOOK_ALLOW_PRIVATE = True
    webhook_url_check("http://127.0.0.1:9/hook")
    assert webhook_addresses("127.0.0.1", 9) == ["127.0.0.1"]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://8.8.8.8/hook", "http or https"),
        ("https:///hook", "http or https"),
        ("https://8.8.8.8:99999/hook", "between 0 and 65535"),
        ("https://no-such-host.invalid/hook", "does not resolve"),
    ],
)
def test_a_malformed_or_unresolvable_url_is_refused_naming_the_field(url: str, message: str) -> None:
    with pytest.raises(ValidationError) as raised:
        webhook_url_check(url)
    assert list(raised.value.message_dict) == ["webhook_url"] and message in raised.value.message_dict["webhook_url"][0]
