"""JSON with a bounded nesting depth, for request bodies and JSON strings inside forms.

Python's json decoder recurses once per level: a body nested 100000 deep raised RecursionError,
which Django answered with a 500. Bodies (and JSON-encoded form fields) are parsed here instead:
too deep is a 400 naming the limit, and nothing downstream (serializers, jsonb) sees more than
MAX_JSON_DEPTH levels.
"""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser, get_encoding
from rest_framework.utils import json

MAX_JSON_DEPTH = 32


class JSONTooDeep(ValueError):
    pass


def json_depth_check(value: Any, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Raise JSONTooDeep when lists and objects nest more than max_depth levels (iterative: no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > max_depth:
            raise JSONTooDeep(f"JSON nested more than {max_depth} levels deep.")
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))


def json_loads_bounded(text: str | bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """json.loads (NaN and Infinity refused, as DRF does) raising JSONTooDeep instead of RecursionError."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise JSONTooDeep(f"JSON nested more than {max_depth} levels deep.") from None
    json_depth_check(value, max_depth)
    return value


class BoundedJSONParser(JSONParser):
    """DRF's JSON parser with a nesting limit: too deep or malformed answers 400, never 500."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict | None = None) -> Any:
        encoding = get_encoding(parser_context or {})
        try:
            return json_loads_bounded(stream.read().decode(encoding))
        except JSONTooDeep as error:
            raise ParseError(str(error)) from None
        except ValueError as error:  # UnicodeDecodeError and json.JSONDecodeError are ValueErrors
            raise ParseError(f"JSON parse error - {error}") from None
