"""Server-rendered pages. Each is a template plus a little JavaScript that calls the public API, as any client does."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponseBase
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.generic import TemplateView

from image_model_domain.registry import SCHEDULERS


@method_decorator(ensure_csrf_cookie, name="dispatch")
class PageView(TemplateView):
    """A page of the web interface; where anonymous use of the API is off, only for signed-in users."""

    nav = ""  # the navigation entry marked as the current page
    title = ""

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not settings.API_ALLOW_ANONYMOUS and not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        return super().dispatch(request, *args, **kwargs)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return super().get_context_data(nav=self.nav, title=self.title, **kwargs)


class GeneratePageView(PageView):
    template_name = "web/generate.html"
    nav = "generate"
    title = "Generate"
    extra_context = {"schedulers": SCHEDULERS}


class RandomDiffusionPageView(PageView):
    template_name = "web/random.html"
    nav = "random"
    title = "Random diffusion"
    extra_context = {"schedulers": SCHEDULERS}


class QueuePageView(PageView):
    template_name = "web/queue.html"
    nav = "queue"
    title = "Queue"


class LibraryPageView(PageView):
    template_name = "web/library.html"
    nav = "library"
    title = "Library"


class ModelsPageView(PageView):
    template_name = "web/models.html"
    nav = "models"
    title = "Models and LoRAs"


class DatasetsPageView(PageView):
    template_name = "web/datasets.html"
    nav = "datasets"
    title = "Datasets"
