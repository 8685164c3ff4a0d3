"""OpenAPI generation: drf-spectacular's AutoSchema, told when anonymous clients may call an operation."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from django.contrib.auth.models import AnonymousUser
from drf_spectacular import openapi

import common.api.authentication  # noqa: F401  (registers the bearer scheme's extension)


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


def _require_non_blank(schema: dict[str, Any]) -> None:
    """DRF trims text before its not-blank check, so "  " is refused though minLength 1 allows it: say `\\S`."""
    text = schema.get("type") == "string" and schema.get("minLength", 0) >= 1
    if text and not any(key in schema for key in ("pattern", "format", "enum")):
        schema["pattern"] = r"\S"
    for child in schema.get("properties", {}).values():
        _require_non_blank(child)
    if isinstance(schema.get("items"), dict):
        _require_non_blank(schema["items"])


def non_blank_strings(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    for name, component in result.get("components", {}).get("schemas", {}).items():
        if name.endswith("Request"):
            _require_non_blank(component)
    return result


def not_found_on_path_parameters(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """An operation with path parameters answers 404 (JSON) when they name nothing, or do not fit the route."""
    error = {
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        "description": "No such object, or not one of yours.",
    }
    for path, operations in result.get("paths", {}).items():
        if "{" not in path:
            continue
        for operation in operations.values():
            if isinstance(operation, dict) and "responses" in operation:
                operation["responses"].setdefault("404", error)
    return result
