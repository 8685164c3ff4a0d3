from django.urls import path

from image_model_domain.api.views.submissions import LegacyRandomDiffusionView

urlpatterns = [
    path(
        "random_diffusion/<int:dataset_id>/initialize_diffusion/",
        LegacyRandomDiffusionView.as_view(),
        name="legacy-random-diffusion",
    ),
]
