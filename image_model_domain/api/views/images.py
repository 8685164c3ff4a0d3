"""Generated image views: list, recipe, delete and the PNG download."""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from django_filters import rest_framework as filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import generics
from rest_framework.request import Request
from rest_framework.views import APIView

from common.api.errors import error_responses as errors
from common.api.files import media_file_response
from common.api.filters import StrictFilterSet
from image_model_domain.api.serializers import ImageOutput
from image_model_domain.api.views.openapi import IMAGE_EXAMPLE
from image_model_domain.api.views.visibility import visible_to
from image_model_domain.jobs import image_delete
from image_model_domain.models import GeneratedImage
from image_model_domain.selectors import image_list


class ImageFilter(StrictFilterSet):
    job = filters.UUIDFilter(field_name="job_id")
    model = filters.CharFilter(field_name="model_name")
    prompt = filters.CharFilter(field_name="prompt", lookup_expr="icontains")

    class Meta:
        model = GeneratedImage
        fields = ["job", "model", "prompt"]


@extend_schema_view(
    get=extend_schema(
        summary="Generated images, newest job first, each job's in index order",
        responses={200: ImageOutput(many=True), **errors(400, 401)},
        examples=[OpenApiExample("A page of images", value=IMAGE_EXAMPLE, response_only=True)],
    )
)
class ImageListView(generics.ListAPIView):
    serializer_class = ImageOutput
    filterset_class = ImageFilter

    def get_queryset(self) -> QuerySet[GeneratedImage]:
        return image_list(user=self.request.user)


@extend_schema_view(
    get=extend_schema(
        summary="An image's recipe",
        responses={200: ImageOutput, **errors(401, 404)},
        examples=[OpenApiExample("An image", value=IMAGE_EXAMPLE, response_only=True)],
    ),
    delete=extend_schema(
        summary="Delete an image and its file",
        responses={204: OpenApiResponse(description="Deleted."), **errors(401, 404)},
    ),
)
class ImageDetailView(generics.RetrieveDestroyAPIView):
    serializer_class = ImageOutput

    def get_queryset(self) -> QuerySet[GeneratedImage]:
        return visible_to(self.request, GeneratedImage.objects.all())

    def perform_destroy(self, instance: GeneratedImage) -> None:
        image_delete(image=instance)


PNG_RESPONSES = {
    (200, media_type): OpenApiResponse(
        OpenApiTypes.BINARY,
        description="The PNG, with its recipe in text chunks: image/png, or application/octet-stream with `?download`.",
    )
    for media_type in ("image/png", "application/octet-stream")
}


class ImageFileView(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter(
                "download",
                OpenApiTypes.STR,
                OpenApiParameter.QUERY,
                description="Present (any value): served as an attachment named `<job>-<index>.png`, "
                "as application/octet-stream.",
            )
        ],
        responses={**PNG_RESPONSES, **errors(401, 404)},
        summary="Download the PNG",
    )
    def get(self, request: Request, pk: str) -> HttpResponse:
        image = get_object_or_404(visible_to(request, GeneratedImage.objects.all()), pk=pk)
        download = "download" in request.query_params
        return media_file_response(
            image.file,
            content_type="application/octet-stream" if download else "image/png",
            as_attachment=download,
            filename=f"{image.job_id}-{image.index}.png",
        )
