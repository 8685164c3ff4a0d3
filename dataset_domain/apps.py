from django.apps import AppConfig


class DatasetDomainConfig(AppConfig):
    name = "dataset_domain"
    verbose_name = "Datasets"

    def ready(self) -> None:
        from dataset_domain import fixture_media  # noqa: F401  (connects the loaddata hook)
