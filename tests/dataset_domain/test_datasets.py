"""The dataset domain functions in-process: rows in PostgreSQL, files under MEDIA_ROOT, errors naming the field."""

from __future__ import annotations

import hashlib
import io
import os
import struct
import zlib
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from dataset_domain.datasets import dataset_create, dataset_image_add, dataset_image_delete
from dataset_domain.models import Dataset, DatasetImage

pytestmark = pytest.mark.django_db


def image_bytes(
    size: tuple[int, int] = (24, 16), colour: tuple[int, int, int] = (200, 30, 10), fmt: str = "PNG"
) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format=fmt)
    return buffer.getvalue()


def upload(data: bytes, name: str = "photo.png") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type="image/png")


def errors_of(raised: pytest.ExceptionInfo[ValidationError]) -> dict[str, list[str]]:
    return raised.value.message_dict


def test_a_dataset_name_is_unique_and_the_error_names_the_field() -> None:
    dataset = dataset_create(name="portraits", description="faces")
    assert Dataset.objects.get(name="portraits").description == "faces" and dataset.pk

    with pytest.raises(ValidationError) as raised:
        dataset_create(name="portraits")
    assert "exists already" in errors_of(raised)["name"][0]
    assert Dataset.objects.filter(name="portraits").count() == 1


def test_an_added_image_is_stored_with_its_size_and_digest(settings, tmp_path: Path) -> None:  # noqa: ANN001
    settings.MEDIA_ROOT = tmp_path
    dataset = dataset_create(name="portraits")
    data = image_bytes()

    image = dataset_image_add(dataset=dataset, file=upload(data))

    row = DatasetImage.objects.get(pk=image.pk)
    assert (row.width, row.height, row.sha256) == (24, 16, hashlib.sha256(data).hexdigest())
    assert row.image.name == "datasets/portraits/photo.png"
    assert (tmp_path / row.image.name).read_bytes() == data


def test_a_client_supplied_path_in_the_file_name_stays_inside_the_dataset_folder(settings, tmp_path: Path) -> None:  # noqa: ANN001
    settings.MEDIA_ROOT = tmp_path / "media"
    dataset = dataset_create(name="portraits")

    image = dataset_image_add(dataset=dataset, file=upload(image_bytes(), name="../../../outside.png"))

    assert image.image.name == "datasets/portraits/outside.png"
    assert not (tmp_path / "outside.png").exists()


def test_the_same_content_twice_in_one_dataset_is_refused_but_another_dataset_takes_it(
    settings, tmp_path: Path
) -> None:  # noqa: ANN001
    settings.MEDIA_ROOT = tmp_path
    first, second = dataset_create(name="first"), dataset_create(name="second")
    data = image_bytes()
    dataset_image_add(dataset=first, file=upload(data))

    with pytest.raises(ValidationError) as raised:
        dataset_image_add(dataset=first, file=upload(data, name="again.png"))
    assert "in the dataset already" in errors_of(raised)["image"][0]
    assert first.images.count() == 1 and not (tmp_path / "datasets/first/again.png").exists()

    dataset_image_add(dataset=second, file=upload(data))
    assert second.images.count() == 1


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (a decompression bomb needs no more to be refused)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not an image at all", "Not a readable image"),
        (image_bytes(fmt="TIFF"), "Unsupported image format 'TIFF'"),
        (png_header_only(8000, 8000), "the limit is 40000000"),
    ],
    ids=["garbage", "tiff", "decompression-bomb"],
)
def test_what_is_not_an_acceptable_image_is_refused_naming_the_field(
    data: bytes,
    message: str,
    settings,
    tmp_path: Path,  # noqa: ANN001
) -> None:
    settings.MEDIA_ROOT = tmp_path
    dataset = dataset_create(name="portraits")

    with pytest.raises(ValidationError) as raised:
        dataset_image_add(dataset=dataset, file=upload(data))

    assert message in errors_of(raised)["image"][0]
    assert not dataset.images.exists() and not any(tmp_path.rglob("*.png"))


def test_a_file_over_the_upload_limit_is_refused_before_it_is_decoded(settings, tmp_path: Path) -> None:  # noqa: ANN001
    settings.MEDIA_ROOT = tmp_path
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    dataset = dataset_create(name="portraits")
    noise = io.BytesIO()
    Image.frombytes("RGB", (64, 64), os.urandom(64 * 64 * 3)).save(noise, format="PNG")  # ~12 KB

    with pytest.raises(ValidationError) as raised:
        dataset_image_add(dataset=dataset, file=upload(noise.getvalue()))

    assert "larger than 1024 bytes" in errors_of(raised)["image"][0]


def test_deleting_an_image_removes_its_file_once_the_row_is_gone(
    settings,
    tmp_path: Path,
    django_capture_on_commit_callbacks,  # noqa: ANN001
) -> None:
    settings.MEDIA_ROOT = tmp_path
    image = dataset_image_add(dataset=dataset_create(name="portraits"), file=upload(image_bytes()))
    path = tmp_path / image.image.name
    assert path.exists()

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        dataset_image_delete(image=image)
    assert not DatasetImage.objects.filter(pk=image.pk).exists()
    assert path.exists()  # not before the transaction that removed the row commits
    for callback in callbacks:
        callback()
    assert not path.exists()
