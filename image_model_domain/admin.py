from __future__ import annotations

from collections.abc import Callable

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse

from common.admin import file_link, thumbnail
from image_model_domain.jobs import job_cancel, job_retry
from image_model_domain.models import DLModel, GeneratedImage, GenerationJob, LoraAdapter


def generated_image_url(image: GeneratedImage) -> str | None:
    return reverse("image-file", args=[image.pk]) if image.file else None


@admin.register(DLModel)
class DLModelAdmin(admin.ModelAdmin):
    list_display = ["name", "family", "source", "enabled", "preload", "resolution", "default_scheduler", "updated_at"]
    list_filter = ["family", "enabled", "preload"]
    list_editable = ["enabled", "preload"]
    search_fields = ["name", "source", "description"]


@admin.register(LoraAdapter)
class LoraAdapterAdmin(admin.ModelAdmin):
    list_display = ["name", "family", "source", "weight_name", "default_scale", "enabled"]
    list_filter = ["family", "enabled"]
    list_editable = ["enabled"]
    search_fields = ["name", "source", "trigger_words", "description"]


class GeneratedImageInline(admin.TabularInline):
    model = GeneratedImage
    fields = ["preview", "index", "prompt", "model_name", "seed"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    @admin.display(description="image")
    def preview(self, obj: GeneratedImage) -> str:
        return thumbnail(generated_image_url(obj), 64)


@admin.register(GenerationJob)
class GenerationJobAdmin(admin.ModelAdmin):
    list_display = ["id", "kind", "status", "owner", "model", "progress", "images_expected", "queued_at", "inference_s"]
    list_filter = ["status", "kind", "model", "queue"]
    search_fields = ["id", "params", "error", "owner__username"]
    readonly_fields = [
        "init_image_file" if field.name == "init_image" else field.name for field in GenerationJob._meta.fields
    ]
    exclude = ["init_image"]
    date_hierarchy = "queued_at"
    inlines = [GeneratedImageInline]
    actions = ["cancel_jobs", "retry_jobs"]

    @admin.display(description="init image")
    def init_image_file(self, obj: GenerationJob) -> str:
        url = reverse("job-init-image", args=[obj.pk]) if obj.init_image else None
        return file_link(url, obj.init_image.name)

    @admin.display(description="progress")
    def progress(self, obj: GenerationJob) -> str:
        return f"{obj.progress_step}/{obj.progress_total}"

    def _each_job(self, request: HttpRequest, queryset: QuerySet[GenerationJob], action: Callable[..., object]) -> int:
        """Call action(job=...) for each job; a job it refuses is named in a warning. How many it took."""
        done = 0
        for job in queryset:
            try:
                action(job=job)
                done += 1
            except ValidationError as error:
                self.message_user(request, f"{job.pk}: {error.messages[0]}", level=messages.WARNING)
        return done

    @admin.action(description="Cancel selected jobs")
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet[GenerationJob]) -> None:
        self.message_user(request, f"Asked {self._each_job(request, queryset, job_cancel)} jobs to cancel.")

    @admin.action(description="Retry selected failed or cancelled jobs")
    def retry_jobs(self, request: HttpRequest, queryset: QuerySet[GenerationJob]) -> None:
        self.message_user(request, f"Queued {self._each_job(request, queryset, job_retry)} jobs again.")


@admin.register(GeneratedImage)
class GeneratedImageAdmin(admin.ModelAdmin):
    list_display = ["preview", "id", "job", "index", "model_name", "seed", "prompt", "created_at"]
    list_filter = ["model_name", "scheduler", "created_at"]
    search_fields = ["prompt", "negative_prompt", "model_name", "job__id"]
    readonly_fields = ["preview_large"] + [
        "file_view" if field.name == "file" else field.name for field in GeneratedImage._meta.fields
    ]
    exclude = ["file"]

    @admin.display(description="file")
    def file_view(self, obj: GeneratedImage) -> str:
        return file_link(generated_image_url(obj), obj.file.name)

    @admin.display(description="image")
    def preview(self, obj: GeneratedImage) -> str:
        return thumbnail(generated_image_url(obj))

    @admin.display(description="image")
    def preview_large(self, obj: GeneratedImage) -> str:
        return thumbnail(generated_image_url(obj), 512)
