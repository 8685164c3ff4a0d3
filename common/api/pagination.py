"""Pagination for the API's lists: ?limit= and ?offset=, as DRF's LimitOffsetPagination, checked strictly.

DRF ignores a limit or offset it cannot read (?offset=abc served the first page): here it answers 400 naming the
parameter, as the schema's integer type and bounds say. A limit above max_limit is cut to it.
"""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request

MAX_OFFSET = 2**31 - 1  # PostgreSQL's OFFSET is a bigint; past this no list has rows anyway


def _whole_number(request: Request, name: str, *, minimum: int, maximum: int | None = None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or value < minimum or (maximum is not None and value > maximum):
        bounds = f"from {minimum} to {maximum}" if maximum is not None else f"of at least {minimum}"
        raise ValidationError({name: [f"A whole number {bounds} is required."]})
    return value


class Pagination(LimitOffsetPagination):
    """A larger limit is cut to max_limit. Without one, ?limit=10**30 reached PostgreSQL (LIMIT out of range: 500)."""

    max_limit = 1000

    def get_limit(self, request: Request) -> int | None:
        value = _whole_number(request, self.limit_query_param, minimum=1)
        return self.default_limit if value is None else min(value, self.max_limit)

    def get_offset(self, request: Request) -> int:
        return _whole_number(request, self.offset_query_param, minimum=0, maximum=MAX_OFFSET) or 0

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        bounds = {
            self.limit_query_param: {"minimum": 1},
            self.offset_query_param: {"minimum": 0, "maximum": MAX_OFFSET},
        }
        for parameter in parameters:
            parameter["schema"].update(bounds.get(parameter["name"], {}))
        return parameters
