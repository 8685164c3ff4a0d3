"""Webhook delivery resolves the host once, refuses private answers, and connects to the checked address.

The resolver stands in for DNS (a name that answers differently each time is what DNS rebinding
is); the receivers are real HTTP and HTTPS servers on 127.0.0.1.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError

from image_model_domain.webhooks import WebhookForbidden, webhook_url_check
from tasks.webhooks import webhook_post

HOST = "hooks.example.test"
PUBLIC = "93.184.215.14"  # a global address; nothing is ever sent to it in these tests


class Receiver:
    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.sni: list[str | None] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((self.path, dict(self.headers), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            tls.sni_callback = lambda sock, name, context: self.sni.append(name)
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Dns:
    """Answers for HOST in turn (the last answer repeats); counts the lookups."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers)
        self.lookups = 0

    def __call__(self, host: str, port: int, *args: object, **kwargs: object) -> list:
        assert host == HOST
        answer = self.answers[min(self.lookups, len(self.answers) - 1)]
        self.lookups += 1
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port)) for address in answer]


@pytest.fixture
def receiver() -> Receiver:
    server = Receiver()
    yield server
    server.close()


def test_a_name_that_rebinds_to_loopback_after_submission_is_refused_at_delivery(
    receiver, settings, monkeypatch
) -> None:  # noqa: ANN001, E501
    settings.WEBHOOK_ALLOW_PRIVATE = False
    dns = Dns([PUBLIC], ["127.0.0.1"])
    monkeypatch.setattr(socket, "getaddrinfo", dns)  # the submission check uses the system resolver
    url = f"http://{HOST}:{receiver.port}/hook"
    webhook_url_check(url)  # public at submission: accepted
    with pytest.raises(WebhookForbidden):
        webhook_post(url, b"{}", {}, resolve=dns)
    assert receiver.requests == []
    with pytest.raises(ValidationError):  # and a submission now is refused too
        webhook_url_check(url)


@pytest.mark.parametrize("answer", [[PUBLIC, "127.0.0.1"], ["10.0.0.7"], ["169.254.169.254"], ["::1"], ["fe80::1"]])
def test_any_private_address_among_the_answers_refuses_the_delivery(receiver, settings, answer) -> None:  # noqa: ANN001
    settings.WEBHOOK_ALLOW_PRIVATE = False
    with pytest.raises(WebhookForbidden):
        webhook_post(f"http://{HOST}:{receiver.port}/hook", b"{}", {}, resolve=Dns(answer))
    assert receiver.requests == []


def test_it_connects_to_the_checked_address_with_the_name_in_the_host_header(receiver, settings) -> None:  # noqa: ANN001
    settings.WEBHOOK_ALLOW_PRIVATE = True  # the receiver is on 127.0.0.1
    dns = Dns(["127.0.0.1"], [PUBLIC])  # a second lookup would go elsewhere
    status = webhook_post(
        f"http://{HOST}:{receiver.port}/hook?job=1", b'{"a": 1}', {"X-Diffusion-Signature": "s"}, resolve=dns
    )
    assert status == 204 and dns.lookups == 1
    ((path, headers, body),) = receiver.requests
    assert path == "/hook?job=1" and body == b'{"a": 1}'
    assert headers["Host"] == f"{HOST}:{receiver.port}" and headers["X-Diffusion-Signature"] == "s"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl to make a certificate")
def test_https_sends_the_name_as_sni_and_verifies_the_certificate_against_it(settings, tmp_path: Path) -> None:  # noqa: ANN001
    settings.WEBHOOK_ALLOW_PRIVATE = True
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-keyout", str(key),
         "-out", str(cert), "-subj", f"/CN={HOST}", "-addext", f"subjectAltName=DNS:{HOST}"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    server = Receiver(tls)
    try:
        url = f"https://{HOST}:{server.port}/hook"
        # Trusted (the test's CA) and named for the host: delivered, to 127.0.0.1, with SNI = the name.
        assert webhook_post(url, b"{}", {}, resolve=Dns(["127.0.0.1"]), ca_certs=str(cert)) == 204
        assert server.sni[-1] == HOST and server.requests[-1][1]["Host"] == f"{HOST}:{server.port}"
        # The same server under the system's CAs: verification is on, so nothing is delivered.
        with pytest.raises(Exception, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
            webhook_post(url, b"{}", {}, resolve=Dns(["127.0.0.1"]))
        # A certificate for another name: refused even with the right CA.
        other = f"https://other.example.test:{server.port}/hook"
        with pytest.raises(Exception, match="hostname|match"):
            webhook_post(
                other, b"{}", {}, resolve=lambda host, port, **kw: Dns(["127.0.0.1"])(HOST, port), ca_certs=str(cert)
            )
        assert len(server.requests) == 1
    finally:
        server.close()
