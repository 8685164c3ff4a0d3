"""Thin views: validate with a serializer, call one domain function, serialize the answer.

A package by topic; the names below are what urls.py, legacy_urls.py and other code import from here.
"""

from image_model_domain.api.views.common import (
    FINISHED_JOB_EXAMPLE,
    IDEMPOTENCY_KEY,
    IMAGE_EXAMPLE,
    JOB_ACCEPTED,
    JOB_EXAMPLE,
    LOCATION,
    LORA_EXAMPLE,
    MODEL_EXAMPLE,
    RETRY_AFTER,
    SUBMISSION_ERRORS,
    SubmissionThrottle,
    accepted,
    owner_of,
    registry_detail_schema,
    registry_list_schema,
    visible_to,
)
from image_model_domain.api.views.events import JobEventsView
from image_model_domain.api.views.images import ImageDetailView, ImageFileView, ImageFilter, ImageListView
from image_model_domain.api.views.jobs import (
    JobCancelView,
    JobDetailView,
    JobFilter,
    JobInitImageView,
    JobListView,
    QueueView,
)
from image_model_domain.api.views.registry import (
    CachedRegistryList,
    DLModelDetailView,
    DLModelListView,
    LoraDetailView,
    LoraListView,
)
from image_model_domain.api.views.submissions import (
    GenerationCreateView,
    LegacyRandomDiffusionView,
    RandomDiffusionCreateView,
)

__all__ = [
    "FINISHED_JOB_EXAMPLE",
    "IDEMPOTENCY_KEY",
    "IMAGE_EXAMPLE",
    "JOB_ACCEPTED",
    "JOB_EXAMPLE",
    "LOCATION",
    "LORA_EXAMPLE",
    "MODEL_EXAMPLE",
    "RETRY_AFTER",
    "SUBMISSION_ERRORS",
    "CachedRegistryList",
    "DLModelDetailView",
    "DLModelListView",
    "GenerationCreateView",
    "ImageDetailView",
    "ImageFileView",
    "ImageFilter",
    "ImageListView",
    "JobCancelView",
    "JobDetailView",
    "JobEventsView",
    "JobFilter",
    "JobInitImageView",
    "JobListView",
    "LegacyRandomDiffusionView",
    "LoraDetailView",
    "LoraListView",
    "QueueView",
    "RandomDiffusionCreateView",
    "SubmissionThrottle",
    "accepted",
    "owner_of",
    "registry_detail_schema",
    "registry_list_schema",
    "visible_to",
]
