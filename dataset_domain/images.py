"""Checks on uploaded images, shared by dataset uploads and init images."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import IO

from django.conf import settings
from django.core.exceptions import ValidationError
from PIL import Image, UnidentifiedImageError

ALLOWED_FORMATS = {"PNG", "JPEG", "WEBP", "GIF", "BMP"}
MAX_PIXELS = 40_000_000  # a decompression bomb decodes to gigabytes from a few kilobytes


@dataclass(frozen=True)
class CheckedImage:
    width: int
    height: int
    format: str
    sha256: str


def image_check(file: IO[bytes], *, field: str = "image") -> CheckedImage:
    """Validate an uploaded image: size in bytes, real image content, pixel count."""
    size = getattr(file, "size", None)
    if size is not None and size > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
        raise ValidationError({field: f"The file is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes."})
    file.seek(0)
    digest = hashlib.sha256()
    for chunk in iter(lambda: file.read(1 << 20), b""):
        digest.update(chunk)
    file.seek(0)
    try:
        with Image.open(file) as image:
            width, height = image.size
            image_format = image.format or ""
            if width * height > MAX_PIXELS:
                raise ValidationError({field: f"The image has {width * height} pixels; the limit is {MAX_PIXELS}."})
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise ValidationError({field: f"Not a readable image: {error}"}) from None
    finally:
        file.seek(0)
    if image_format not in ALLOWED_FORMATS:
        raise ValidationError({field: f"Unsupported image format {image_format!r}; use PNG, JPEG or WebP."})
    return CheckedImage(width=width, height=height, format=image_format, sha256=digest.hexdigest())
