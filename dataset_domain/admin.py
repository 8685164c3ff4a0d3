from __future__ import annotations

from django.contrib import admin
from django.urls import reverse

from common.admin import file_link, thumbnail
from dataset_domain.images import image_check
from dataset_domain.models import Dataset, DatasetImage


def dataset_image_url(image: DatasetImage) -> str | None:
    return reverse("dataset-image-file", args=[image.dataset_id, image.pk]) if image.image else None


class DatasetImageInline(admin.TabularInline):
    model = DatasetImage
    fields = ["preview", "image_file", "width", "height", "sha256"]
    readonly_fields = ["preview", "image_file", "width", "height", "sha256"]
    extra = 0

    def has_add_permission(self, request, obj=None) -> bool:  # noqa: ANN001
        return False  # uploads go through the dataset image form, which checks the file

    @admin.display(description="preview")
    def preview(self, obj: DatasetImage) -> str:
        return thumbnail(dataset_image_url(obj), 64)

    @admin.display(description="image")
    def image_file(self, obj: DatasetImage) -> str:
        return file_link(dataset_image_url(obj), obj.image.name)


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ["name", "image_count", "created_at"]
    search_fields = ["name", "description"]
    inlines = [DatasetImageInline]

    @admin.display(description="images")
    def image_count(self, obj: Dataset) -> int:
        return obj.images.count()


@admin.register(DatasetImage)
class DatasetImageAdmin(admin.ModelAdmin):
    list_display = ["preview", "dataset", "image_file", "width", "height", "created_at"]
    list_filter = ["dataset"]
    search_fields = ["image", "sha256", "dataset__name"]
    readonly_fields = ["preview", "width", "height", "sha256"]

    @admin.display(description="preview")
    def preview(self, obj: DatasetImage) -> str:
        return thumbnail(dataset_image_url(obj))

    @admin.display(description="image")
    def image_file(self, obj: DatasetImage) -> str:
        return file_link(dataset_image_url(obj), obj.image.name)

    def save_model(self, request, obj: DatasetImage, form, change: bool) -> None:  # noqa: ANN001
        if "image" in form.changed_data:
            checked = image_check(form.cleaned_data["image"])
            obj.width, obj.height, obj.sha256 = checked.width, checked.height, checked.sha256
        super().save_model(request, obj, form, change)
