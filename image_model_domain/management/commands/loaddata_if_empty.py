"""`make run`'s fixture step: load a fixture file only while the tables it fills are all empty.

`loaddata` with natural keys overwrites rows it finds, so running it at every start would undo
registry edits (an enabled model would come back disabled, a deleted sample image would return).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.apps import apps
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Load each fixture file whose tables are all empty; tables that hold rows (and edits) are left alone."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("fixtures", nargs="+", help="fixture files (JSON)")

    def handle(self, *args: Any, **options: Any) -> None:
        for path in options["fixtures"]:
            labels = sorted({row["model"] for row in json.loads(Path(path).read_text())})
            filled = [label for label in labels if apps.get_model(label)._default_manager.exists()]
            if filled:
                self.stdout.write(f"{path}: not loaded, {', '.join(filled)} already has rows")
                continue
            call_command("loaddata", path, verbosity=options["verbosity"], stdout=self.stdout)
