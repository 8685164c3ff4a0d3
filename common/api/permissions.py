from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings
from rest_framework.permissions import SAFE_METHODS, BasePermission

if TYPE_CHECKING:
    from rest_framework.request import Request
    from rest_framework.views import APIView


class IsUserOrAllowedAnonymous(BasePermission):
    """Signed-in users always; anonymous clients only where API_ALLOW_ANONYMOUS is on."""

    message = "Sign in or send an API token (Authorization: Token <key>)."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return bool(request.user and request.user.is_authenticated) or settings.API_ALLOW_ANONYMOUS


class IsStaffOrReadOnly(IsUserOrAllowedAnonymous):
    """Registry writes are for staff."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        if request.method in SAFE_METHODS:
            return super().has_permission(request, view)
        return bool(request.user and request.user.is_staff)
