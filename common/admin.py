"""Admin helpers: stored files shown and linked through their API views."""

from __future__ import annotations

from django.utils.html import format_html


def thumbnail(url: str | None, size: int = 96) -> str:
    """An <img> of a file through its API view (staff read everything there; /media/ is not served)."""
    if not url:
        return "-"
    return format_html('<img src="{}" style="max-width:{}px;max-height:{}px" alt="">', url, size, size)


def file_link(url: str | None, name: str) -> str:
    """A stored file's name linking to its API view (the admin's own file links would point at /media/)."""
    return format_html('<a href="{}">{}</a>', url, name) if url else "-"
