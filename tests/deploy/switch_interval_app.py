"""A WSGI app that answers its process's GIL switch interval (tests/deploy/test_web_server.py)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable


def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
    body = repr(sys.getswitchinterval()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
