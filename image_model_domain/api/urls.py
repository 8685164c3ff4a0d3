from django.urls import path

from image_model_domain.api.views.events import JobEventsView
from image_model_domain.api.views.images import ImageDetailView, ImageFileView, ImageListView
from image_model_domain.api.views.jobs import JobCancelView, JobDetailView, JobInitImageView, JobListView, QueueView
from image_model_domain.api.views.registry import DLModelDetailView, DLModelListView, LoraDetailView, LoraListView
from image_model_domain.api.views.submissions import GenerationCreateView, RandomDiffusionCreateView

urlpatterns = [
    path("generations/", GenerationCreateView.as_view(), name="generation-create"),
    path("random-diffusions/", RandomDiffusionCreateView.as_view(), name="random-diffusion-create"),
    path("jobs/", JobListView.as_view(), name="job-list"),
    path("jobs/<uuid:pk>/", JobDetailView.as_view(), name="job-detail"),
    path("jobs/<uuid:pk>/init-image/", JobInitImageView.as_view(), name="job-init-image"),
    path("jobs/<uuid:pk>/events/", JobEventsView.as_view(), name="job-events"),
    path("jobs/<uuid:pk>/cancel/", JobCancelView.as_view(), name="job-cancel"),
    path("queue/", QueueView.as_view(), name="queue"),
    path("images/", ImageListView.as_view(), name="image-list"),
    path("images/<uuid:pk>/", ImageDetailView.as_view(), name="image-detail"),
    path("images/<uuid:pk>/file/", ImageFileView.as_view(), name="image-file"),
    path("models/", DLModelListView.as_view(), name="model-list"),
    path("models/<slug:name>/", DLModelDetailView.as_view(), name="model-detail"),
    path("loras/", LoraListView.as_view(), name="lora-list"),
    path("loras/<slug:name>/", LoraDetailView.as_view(), name="lora-detail"),
]
