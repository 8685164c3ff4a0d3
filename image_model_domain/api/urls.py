from django.urls import path

from image_model_domain.api import views

urlpatterns = [
    path("generations/", views.GenerationCreateView.as_view(), name="generation-create"),
    path("random-diffusions/", views.RandomDiffusionCreateView.as_view(), name="random-diffusion-create"),
    path("jobs/", views.JobListView.as_view(), name="job-list"),
    path("jobs/<uuid:pk>/", views.JobDetailView.as_view(), name="job-detail"),
    path("jobs/<uuid:pk>/init-image/", views.JobInitImageView.as_view(), name="job-init-image"),
    path("jobs/<uuid:pk>/events/", views.JobEventsView.as_view(), name="job-events"),
    path("jobs/<uuid:pk>/cancel/", views.JobCancelView.as_view(), name="job-cancel"),
    path("queue/", views.QueueView.as_view(), name="queue"),
    path("images/", views.ImageListView.as_view(), name="image-list"),
    path("images/<uuid:pk>/", views.ImageDetailView.as_view(), name="image-detail"),
    path("images/<uuid:pk>/file/", views.ImageFileView.as_view(), name="image-file"),
    path("models/", views.DLModelListView.as_view(), name="model-list"),
    path("models/<slug:name>/", views.DLModelDetailView.as_view(), name="model-detail"),
    path("loras/", views.LoraListView.as_view(), name="lora-list"),
    path("loras/<slug:name>/", views.LoraDetailView.as_view(), name="lora-detail"),
]
