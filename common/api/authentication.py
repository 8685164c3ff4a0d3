"""API tokens: `Authorization: Bearer <token>` (what OpenAPI generators send) or `Authorization: Token <token>`.

One scheme is documented (HTTP bearer); the DRF spelling `Token` is the same token under another word. An
unknown or malformed token answers 401 whichever word carries it, never silently anonymous.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request


class TokenAuthentication(authentication.TokenAuthentication):
    keyword = "Bearer"  # the WWW-Authenticate challenge of a 401
    keywords = (b"bearer", b"token")

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        words = authentication.get_authorization_header(request).split()
        if not words or words[0].lower() not in self.keywords:
            return None
        if len(words) != 2:
            raise exceptions.AuthenticationFailed("Invalid token header: send `Authorization: Bearer <token>`.")
        try:
            key = words[1].decode()
        except UnicodeError:
            raise exceptions.AuthenticationFailed("Invalid token header: the token is not text.") from None
        return self.authenticate_credentials(key)


class TokenAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "common.api.authentication.TokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": (
                "`Authorization: Bearer <token>` (`Authorization: Token <token>` is accepted too). Create a token "
                "in the admin or with `python manage.py drf_create_token <user>`. An unknown token answers 401."
            ),
        }
