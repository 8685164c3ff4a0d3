"""One error shape for the whole API: {"detail": ..., "errors": {field: [messages]}}."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DatabaseError
from drf_spectacular.utils import OpenApiExample, OpenApiResponse
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from common.exceptions import ConflictError, LimitReachedError, UnavailableError


class ErrorSerializer(serializers.Serializer):
    """Every error of the API: a message, and for invalid input the messages of each bad field."""

    detail = serializers.CharField(help_text="What went wrong, for people.")
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Invalid input only: each bad field (or non_field_errors) with its messages.",
    )
    cap = serializers.CharField(required=False, help_text="429 for a queue cap only: the setting that capped it.")
    limit = serializers.IntegerField(required=False, help_text="429 for a queue cap only: the cap's value.")
    active = serializers.IntegerField(required=False, help_text="429 for a queue cap only: jobs queued or running.")


class ServiceUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "A backing service is unavailable; try again shortly."
    default_code = "service_unavailable"


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


class LimitThrottled(exceptions.Throttled):
    """429 with Retry-After; the body adds what the limit's error says about itself (its `extra`)."""

    def __init__(self, error: LimitReachedError) -> None:
        super().__init__(wait=error.retry_after_s, detail=str(error))
        self.extra = error.extra


def _is_only_unique(codes: Any) -> bool:
    """Every error a clash with what exists (a taken name or image, an empty dataset): a valid request, 409."""
    if isinstance(codes, dict):
        return bool(codes) and all(_is_only_unique(value) for value in codes.values())
    if isinstance(codes, list):
        return bool(codes) and all(_is_only_unique(value) for value in codes)
    return codes in ("unique", "conflict")


def _as_drf(error: Exception) -> Exception:
    if isinstance(error, exceptions.ValidationError) and _is_only_unique(error.get_codes()):
        return Conflict("; ".join(_messages(error.detail)))
    if isinstance(error, DjangoValidationError):
        if hasattr(error, "error_dict") and _is_only_unique(
            {key: [e.code for e in value] for key, value in error.error_dict.items()}
        ):
            return Conflict("; ".join(m for messages in error.message_dict.values() for m in messages))
        if hasattr(error, "error_dict"):
            return exceptions.ValidationError(
                {
                    key: [str(m) for m in value.messages] if hasattr(value, "messages") else [str(m) for m in value]
                    for key, value in error.message_dict.items()
                }
            )
        return exceptions.ValidationError({"non_field_errors": error.messages})
    if isinstance(error, RequestDataTooBig | TooManyFieldsSent | TooManyFilesSent):
        # Raised while DRF parses the body; unhandled, Django answered with its HTML 400 page.
        return exceptions.ParseError(str(error) or "The request body is too large.")
    if isinstance(error, UnavailableError):
        return ServiceUnavailable(str(error))
    if isinstance(error, ConflictError):
        return Conflict(str(error))
    if isinstance(error, LimitReachedError):
        return LimitThrottled(error)
    if isinstance(error, DatabaseError) and error.__class__.__name__ in ("OperationalError", "InterfaceError"):
        return ServiceUnavailable(f"The database is unavailable: {error.__class__.__name__}.")
    return error


def _messages(value: Any, path: str = "") -> list[str]:
    """A field's errors as a flat list of strings; nested ones (list items, nested objects) name their place.

    DRF reports a bad list item or nested field as {"0": {"name": ["..."]}}; the API says "0.name: ...".
    """
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list | tuple) and any(isinstance(item, dict | list | tuple) for item in value):
        items = list(enumerate(value))
    elif isinstance(value, list | tuple):
        return [f"{path}: {item}" if path else str(item) for item in value]
    else:
        return [f"{path}: {value}" if path else str(value)]
    return [message for key, item in items for message in _messages(item, f"{path}.{key}" if path else str(key))]


def exception_handler(error: Exception, context: dict[str, Any]) -> Response | None:
    error = _as_drf(error)
    response = drf_exception_handler(error, context)
    if response is None:
        return None
    data = response.data
    if isinstance(data, dict) and "detail" in data and len(data) == 1:
        body = {"detail": str(data["detail"])}
    elif isinstance(data, dict):
        body = {"detail": "Invalid input.", "errors": {str(field): _messages(value) for field, value in data.items()}}
    else:
        body = {"detail": "Invalid input.", "errors": {"non_field_errors": _messages(data)}}
    response.data = {**body, **getattr(error, "extra", {})}
    if response.status_code == status.HTTP_503_SERVICE_UNAVAILABLE:
        response.setdefault("Retry-After", "5")  # a broker or database blip: worth retrying soon
    return response


_ERROR_DOCS: dict[int, tuple[str, dict[str, Any]]] = {
    400: (
        "Invalid input: `errors` names each bad field.",
        {"detail": "Invalid input.", "errors": {"steps": ["Ensure this value is less than or equal to 150."]}},
    ),
    401: (
        "Not signed in, where the server wants it (or a registry write without a token).",
        {"detail": "Authentication credentials were not provided."},
    ),
    403: ("Signed in but not allowed: registry writes are for staff.", {"detail": "You do not have permission."}),
    404: ("No such object, or not one of yours.", {"detail": "No GenerationJob matches the given query."}),
    409: (
        "A conflict: a name (or dataset image) that exists already, an Idempotency-Key reused with another body, "
        "or a job that has finished.",
        {"detail": "The Idempotency-Key 'k1' was used with a different request."},
    ),
    429: (
        "Too many submissions (API_SUBMISSION_RATE), or too many jobs queued or running (the body's `cap`:"
        " API_MAX_QUEUED_JOBS_PER_USER, or API_MAX_QUEUED_JOBS_PER_ANONYMOUS_IP for anonymous clients);"
        " Retry-After says when to try again.",
        {"detail": "Request was throttled. Expected available in 12 seconds."},
    ),
    503: (
        "The queue (or the database) is unavailable; nothing was kept. Try again shortly.",
        {
            "detail": "The queue is unavailable (the message broker did not answer: OperationalError); "
            "nothing was kept, try again shortly."
        },
    ),
}


def error_responses(*codes: int) -> dict[int, OpenApiResponse]:
    """Documented error responses, all in the one error shape (ErrorSerializer)."""
    return {
        code: OpenApiResponse(
            ErrorSerializer,
            description=_ERROR_DOCS[code][0],
            examples=[OpenApiExample(f"Error {code}", value=_ERROR_DOCS[code][1], status_codes=[code])],
        )
        for code in codes
    }
