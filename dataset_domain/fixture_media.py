"""Files named by fixtures live in fixtures/media/; `loaddata` copies each into MEDIA_ROOT.

Note: `loaddata` saves rows raw (no model save() logic), so this is the one signal in the
project: it only makes the file that a fixture row names exist in storage.
"""

from __future__ import annotations

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db.models.signals import post_save
from django.dispatch import receiver

from dataset_domain.models import DatasetImage


@receiver(post_save, sender=DatasetImage)
def copy_fixture_image(sender: type, instance: DatasetImage, raw: bool, **kwargs: object) -> None:
    if not raw or default_storage.exists(instance.image.name):
        return
    source = settings.FIXTURE_MEDIA_DIR / instance.image.name
    if not source.is_file():
        return
    with source.open("rb") as handle:
        saved = default_storage.save(instance.image.name, File(handle))
    if saved != instance.image.name:  # storage never renames a name it reported missing
        raise RuntimeError(f"fixture image stored as {saved}, expected {instance.image.name}")
