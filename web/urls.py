from django.contrib.auth.views import LoginView, LogoutView
from django.urls import path

from web import views

app_name = "web"

urlpatterns = [
    path("", views.GeneratePageView.as_view(), name="generate"),
    path("random/", views.RandomDiffusionPageView.as_view(), name="random"),
    path("queue/", views.QueuePageView.as_view(), name="queue"),
    path("library/", views.LibraryPageView.as_view(), name="library"),
    path("models/", views.ModelsPageView.as_view(), name="models"),
    path("datasets/", views.DatasetsPageView.as_view(), name="datasets"),
    # Note: settings.LOGIN_URL keeps its default, /accounts/login/, which is this route.
    path(
        "accounts/login/",
        LoginView.as_view(
            template_name="web/login.html",
            next_page="web:generate",
            redirect_authenticated_user=True,
            extra_context={"title": "Sign in", "nav": "login"},
        ),
        name="login",
    ),
    path("accounts/logout/", LogoutView.as_view(next_page="web:generate"), name="logout"),
]
