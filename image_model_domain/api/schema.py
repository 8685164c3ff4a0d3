"""OpenAPI generation: drf-spectacular's AutoSchema, told when anonymous clients may call an operation."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from django.contrib.auth.models import AnonymousUser
from drf_spectacular import openapi

import image_model_domain.api.authentication  # noqa: F401  (registers the bearer scheme's extension)


class AutoSchema(openapi.AutoSchema):
    def get_auth(self) -> list[dict[str, Any]]:
        """The token scheme, plus `{}` (no credentials) where the view's permissions let anonymous clients in.

        Asked of the permissions themselves, so the schema follows API_ALLOW_ANONYMOUS as the server does.
        """
        auths = super().get_auth()
        anonymous = SimpleNamespace(user=AnonymousUser(), method=self.method)
        if {} not in auths and all(p.has_permission(anonymous, self.view) for p in self.view.get_permissions()):
            auths.append({})
        return auths


def closed_request_bodies(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Request components list every field the server reads: anything else is refused (api/strict.py), so say so."""
    for name, component in result.get("components", {}).get("schemas", {}).items():
        if name.endswith("Request") and component.get("type") == "object":
            component["additionalProperties"] = False
    return result
