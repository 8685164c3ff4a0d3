from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from config.docs import RedocView, SwaggerView
from config.health import healthz, readyz
from config.metrics import metrics

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs", SwaggerView.as_view(url_name="schema"), name="docs"),
    path("docs/", SwaggerView.as_view(url_name="schema")),
    path("redoc", RedocView.as_view(url_name="schema"), name="redoc"),
    path("redoc/", RedocView.as_view(url_name="schema")),
    path("api/v1/", include("image_model_domain.api.urls")),
    path("api/v1/", include("dataset_domain.api_urls")),
    path("api/image_model_domain/v1/", include("image_model_domain.api.legacy_urls")),
    path("", include("web.urls")),
    # Note: MEDIA_ROOT is not served. Generated images, init images and dataset images are read
    # through the API, which checks who may see them (common/api/files.py).
]
