from django.apps import AppConfig


class ImageModelDomainConfig(AppConfig):
    name = "image_model_domain"
    verbose_name = "Models and generations"
