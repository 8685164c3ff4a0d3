from __future__ import annotations

from django.db import models


class DatasetManager(models.Manager):
    def get_by_natural_key(self, name: str) -> Dataset:
        return self.get(name=name)


class DatasetImageManager(models.Manager):
    def get_by_natural_key(self, dataset_name: str, sha256: str) -> DatasetImage:
        return self.get(dataset__name=dataset_name, sha256=sha256)


class Dataset(models.Model):
    name = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = DatasetManager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def natural_key(self) -> tuple[str]:
        return (self.name,)


def dataset_image_upload_to(instance: DatasetImage, filename: str) -> str:
    return f"datasets/{instance.dataset.name}/{filename}"


class DatasetImage(models.Model):
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="images")
    image = models.ImageField(upload_to=dataset_image_upload_to, max_length=300)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    sha256 = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = DatasetImageManager()

    class Meta:
        ordering = ["dataset", "id"]
        constraints = [
            models.UniqueConstraint(fields=["dataset", "sha256"], name="dataset_image_unique_content"),
        ]

    def __str__(self) -> str:
        return f"{self.dataset.name}/{self.image.name.rsplit('/', 1)[-1]}"

    def natural_key(self) -> tuple[str, str]:
        return (self.dataset.name, self.sha256)

    natural_key.dependencies = ["dataset_domain.dataset"]
