"""Pagination for the API's lists: ?limit= and ?offset=, as DRF's LimitOffsetPagination, with a ceiling."""

from __future__ import annotations

from rest_framework.pagination import LimitOffsetPagination


class Pagination(LimitOffsetPagination):
    """A larger limit is cut to max_limit. Without one, ?limit=10**30 reached PostgreSQL (LIMIT out of range: 500)."""

    max_limit = 1000
