"""One error shape for the whole API: {"detail": ..., "errors": {field: [messages]}}."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from image_model_domain.jobs import BrokerUnavailable, DuplicateRequest


class ServiceUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "A backing service is unavailable; try again shortly."
    default_code = "service_unavailable"


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


def _as_drf(error: Exception) -> Exception:
    if isinstance(error, DjangoValidationError):
        if hasattr(error, "error_dict"):
            return exceptions.ValidationError(
                {
                    key: [str(m) for m in value.messages] if hasattr(value, "messages") else [str(m) for m in value]
                    for key, value in error.message_dict.items()
                }
            )
        return exceptions.ValidationError({"non_field_errors": error.messages})
    if isinstance(error, BrokerUnavailable):
        return ServiceUnavailable(str(error))
    if isinstance(error, DuplicateRequest):
        return Conflict(str(error))
    from django.db import DatabaseError

    if isinstance(error, DatabaseError) and error.__class__.__name__ in ("OperationalError", "InterfaceError"):
        return ServiceUnavailable(f"The database is unavailable: {error.__class__.__name__}.")
    return error


def exception_handler(error: Exception, context: dict[str, Any]) -> Response | None:
    response = drf_exception_handler(_as_drf(error), context)
    if response is None:
        return None
    data = response.data
    if isinstance(data, dict) and "detail" in data and len(data) == 1:
        body = {"detail": str(data["detail"])}
    elif isinstance(data, dict):
        body = {"detail": "Invalid input.", "errors": data}
    else:
        body = {"detail": "Invalid input.", "errors": {"non_field_errors": data}}
    response.data = body
    return response
