"""Stored files answered only by views that have checked who may read them; /media/ is not served.

In production the web process can hand the bytes to the reverse proxy instead of reading them
itself: with MEDIA_ACCEL_REDIRECT set (e.g. /protected-media/), the view answers an empty response
with `X-Accel-Redirect: /protected-media/<name>`, and nginx serves that `internal` location from
MEDIA_ROOT (see the README). Clients can never request that location directly.
"""

from __future__ import annotations

import mimetypes
from urllib.parse import quote

from django.conf import settings
from django.db.models.fields.files import FieldFile
from django.http import FileResponse, Http404, HttpResponse
from django.utils.http import content_disposition_header
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse

IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/gif", "image/bmp", "application/octet-stream"})


def file_responses(description: str) -> dict[tuple[int, str], OpenApiResponse]:
    """The schema's 200 of a view answering media_file_response: each content type it can send, by name
    (generated clients cannot read a wildcard such as image/*: openapi-python-client leaves the response out)."""
    return {
        (200, media_type): OpenApiResponse(OpenApiTypes.BINARY, description=description)
        for media_type in sorted(IMAGE_TYPES)
    }


def media_file_response(
    file: FieldFile, *, filename: str, as_attachment: bool = False, content_type: str | None = None
) -> HttpResponse:
    """The file's bytes (or an X-Accel-Redirect to them); 404 when the row has no file or it is gone."""
    if not file or not file.storage.exists(file.name):
        raise Http404("The file is gone.")
    content_type = content_type or mimetypes.guess_type(file.name)[0] or "application/octet-stream"
    if content_type not in IMAGE_TYPES:
        # Stored names can come from uploaders (dataset images): never let one declare HTML or SVG and
        # run in the service's origin. Anything but a raster image is a download.
        content_type, as_attachment = "application/octet-stream", True
    prefix = settings.MEDIA_ACCEL_REDIRECT
    if prefix:
        response = HttpResponse(content_type=content_type)
        response["X-Accel-Redirect"] = prefix.rstrip("/") + "/" + quote(file.name)
        response["Content-Disposition"] = content_disposition_header(as_attachment, filename)
    else:
        response = FileResponse(
            file.open("rb"), content_type=content_type, as_attachment=as_attachment, filename=filename
        )
    # Private files: shared caches must not keep them for another client.
    response["Cache-Control"] = "private, max-age=3600"
    response["X-Content-Type-Options"] = "nosniff"
    return response
