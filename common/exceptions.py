"""Kinds of failure a domain function raises that the API answers with a status of their own (common/api/errors.py).

Plain Python, so domain modules can raise them without knowing about HTTP.
"""

from __future__ import annotations

from typing import Any


class UnavailableError(Exception):
    """A backing service did not answer; nothing was kept, and trying again shortly may work (503)."""


class ConflictError(Exception):
    """The request is valid but clashes with what exists (409)."""


class LimitReachedError(Exception):
    """The caller has used up a limit; it may try again after `retry_after_s` seconds (429).

    `extra` is added to the error body, so a client can tell which limit and how far over it is.
    """

    retry_after_s = 10
    extra: dict[str, Any] = {}
