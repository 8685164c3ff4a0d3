"""Everything under /api/ answers JSON, errors included.

A URL no API view matches (an id that is not a UUID, a misspelt path) was Django's HTML 404 page, and an
unhandled error its HTML 500: clients and the schema expect the API's one error shape, {"detail": ...}.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse

MESSAGES = {404: "Not found.", 405: "Method not allowed.", 500: "Server error."}


class JSONErrorsUnderAPI:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            request.path.startswith("/api/")
            and response.status_code in MESSAGES
            and not response.get("Content-Type", "").startswith("application/json")
        ):
            replacement = JsonResponse({"detail": MESSAGES[response.status_code]}, status=response.status_code)
            if response.has_header("Allow"):
                replacement["Allow"] = response["Allow"]
            return replacement
        return response
