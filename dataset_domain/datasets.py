"""Domain functions for datasets."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction

from dataset_domain.images import image_check
from dataset_domain.models import Dataset, DatasetImage


@transaction.atomic
def dataset_create(*, name: str, description: str = "") -> Dataset:
    if Dataset.objects.filter(name=name).exists():
        raise ValidationError({"name": ValidationError(f"A dataset named {name!r} exists already.", code="unique")})
    return Dataset.objects.create(name=name, description=description)


@transaction.atomic
def dataset_image_add(*, dataset: Dataset, file: UploadedFile) -> DatasetImage:
    checked = image_check(file, field="image")
    if dataset.images.filter(sha256=checked.sha256).exists():
        raise ValidationError({"image": ValidationError("This image is in the dataset already.", code="unique")})
    image = DatasetImage(dataset=dataset, width=checked.width, height=checked.height, sha256=checked.sha256)
    image.image.save(file.name or f"{checked.sha256[:16]}.png", file, save=False)
    image.save()
    return image


def dataset_image_delete(*, image: DatasetImage) -> None:
    name = image.image.name
    storage = image.image.storage
    image.delete()
    transaction.on_commit(lambda: storage.delete(name))
