from django.urls import path

from dataset_domain import api

urlpatterns = [
    path("datasets/", api.DatasetListView.as_view(), name="dataset-list"),
    path("datasets/<int:pk>/", api.DatasetDetailView.as_view(), name="dataset-detail"),
    path("datasets/<int:pk>/images/", api.DatasetImageListView.as_view(), name="dataset-images"),
    path(
        "datasets/<int:pk>/images/<int:image_pk>/file/", api.DatasetImageFileView.as_view(), name="dataset-image-file"
    ),
]
