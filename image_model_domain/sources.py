"""Where checkpoints and LoRAs may be loaded from, and how job errors are shown to their owners.

A registry source is a Hugging Face repo id (`org/name`) or a local directory confined to
MODEL_ROOT (relative to it, or absolute inside it) or to a directory of MODEL_SOURCE_DIRS; a model's
source may also be one single-file `.safetensors` checkpoint there (Civitai-style; other files, such as
pickled `.ckpt`, are refused). `/etc`, `../../etc` and symlinks that lead out are refused, and a LoRA's
weight_name is a bare file name.
The API and the admin refuse such rows with a 400 naming the field (model field validators); the
worker checks again before it loads anything, since rows can be written past the API.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from django.conf import settings
from django.core.exceptions import ValidationError

HUB_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}\Z")


def source_roots() -> list[Path]:
    return [Path(root).resolve() for root in (settings.MODEL_ROOT, *settings.MODEL_SOURCE_DIRS)]


def _inside(path: Path, roots: list[Path]) -> bool:
    resolved = path.resolve()
    return any(resolved == root or root in resolved.parents for root in roots)


SINGLE_FILE_SUFFIX = ".safetensors"


def source_problem(source: str, *, single_file: bool = False) -> str | None:
    """Why a registry source may not be used, or None when it may.

    single_file: a `.safetensors` file may stand for a whole checkpoint (models); otherwise (LoRAs, a
    single-file model's config directory) a local source is a directory.
    """
    if not source or "\x00" in source or "\\" in source:
        return "Give a Hugging Face repo id (org/name) or a directory under MODEL_ROOT."
    path = PurePosixPath(source)
    if ".." in path.parts:
        return "A source may not contain '..'; give a path relative to MODEL_ROOT or a repo id (org/name)."
    roots = source_roots()
    allowed = "MODEL_ROOT" + (" or MODEL_SOURCE_DIRS" if settings.MODEL_SOURCE_DIRS else "")
    try:
        if path.is_absolute():
            if not _inside(Path(source), roots):
                return f"A local source must be inside {allowed}; give a path relative to MODEL_ROOT or a repo id."
            return _file_problem(Path(source), single_file=single_file)
        local = Path(settings.MODEL_ROOT) / source
        if local.exists():
            if not _inside(local, roots):  # a symlink under MODEL_ROOT that leads out
                return f"This path under MODEL_ROOT leads outside {allowed}."
        elif Path(source).exists():  # diffusers would load it from the process's working directory
            return f"This names a directory of the server outside {allowed}; give a repo id (org/name) instead."
        return _file_problem(local, single_file=single_file)
    except OSError as error:  # a name too long for the filesystem, a symlink loop, ...
        return f"This path cannot be used on this server ({error.strerror or type(error).__name__})."


def _file_problem(path: Path, *, single_file: bool) -> str | None:
    """A local source that is a file (or names one) must be an existing single-file .safetensors checkpoint."""
    names_a_file = path.suffix == SINGLE_FILE_SUFFIX or (path.exists() and not path.is_dir())
    if not names_a_file:
        return None
    if not single_file:
        return "Give the directory that holds the weights (a LoRA names its file in weight_name), not a file."
    if path.suffix != SINGLE_FILE_SUFFIX:
        return "A single-file checkpoint must be a .safetensors file (other formats are unpickled when loaded)."
    if not path.is_file():
        return "No such .safetensors file under MODEL_ROOT; give an existing single-file checkpoint."
    return None


def weight_name_problem(weight_name: str) -> str | None:
    if not weight_name or "\x00" in weight_name or "/" in weight_name or "\\" in weight_name:
        return "Give a bare file name in the source directory (no path), e.g. pytorch_lora_weights.safetensors."
    if weight_name in (".", ".."):
        return "Give a file name."
    return None


def validate_source(value: str) -> None:
    problem = source_problem(value)
    if problem:
        raise ValidationError(problem, code="source")


def validate_model_source(value: str) -> None:
    problem = source_problem(value, single_file=True)
    if problem:
        raise ValidationError(problem, code="source")


def validate_weight_name(value: str) -> None:
    problem = weight_name_problem(value)
    if problem:
        raise ValidationError(problem, code="weight_name")


def is_hub_repo_id(source: str) -> bool:
    return bool(HUB_REPO_ID.match(source))


# An absolute filesystem path: a "/" not preceded by a word character, ":" or another "/", so URLs
# (https://host/path) and repo ids (org/name) are left alone.
_SERVER_PATH = re.compile(r"(?<![\w:/.~-])(?:/[^\s'\"/:,;()\[\]{}<>|]+)+/?")


def error_for_owner(error: str) -> str:
    """A job's error as its (non-staff) owner sees it: the server's filesystem paths taken out."""
    return _SERVER_PATH.sub("<server path>", error) if error else error
