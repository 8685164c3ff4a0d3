"""List filters that refuse what they cannot read, as the schema's types say (400 naming the parameter).

django-filter's BooleanFilter reads `?enabled=maybe` as "no filter" and serves every row; here only true/false
(or 1/0) are booleans.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.db import models
from django_filters import rest_framework as filters
from django_filters.filterset import FILTER_FOR_DBFIELD_DEFAULTS


class StrictBooleanField(forms.Field):
    def to_python(self, value: Any) -> bool | None:
        if value in (None, ""):
            return None
        text = str(value).strip().lower()
        if text in ("true", "1"):
            return True
        if text in ("false", "0"):
            return False
        raise forms.ValidationError("Use true or false.", code="invalid")


class StrictBooleanFilter(filters.BooleanFilter):
    field_class = StrictBooleanField

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("widget", forms.TextInput)  # the default widget reads anything unknown as "no filter"
        super().__init__(*args, **kwargs)


class StrictFilterSet(filters.FilterSet):
    """Booleans read strictly; an empty value is refused where the type has no empty value (a UUID, a choice)."""

    FILTER_DEFAULTS = {
        **FILTER_FOR_DBFIELD_DEFAULTS,
        models.BooleanField: {"filter_class": StrictBooleanFilter},
    }

    def is_valid(self) -> bool:
        valid = super().is_valid()
        empty = [
            name
            for name, filter_ in self.filters.items()
            if self.data.get(name) == "" and not isinstance(filter_, filters.CharFilter)
        ]
        for name in empty:
            self.form.add_error(name, "A value is required.")
        return valid and not empty


class StrictFilterBackend(filters.DjangoFilterBackend):
    filterset_base = StrictFilterSet
