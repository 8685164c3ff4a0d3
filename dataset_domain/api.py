from __future__ import annotations

from typing import Any

from django.db.models import Count, QuerySet
from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from rest_framework import generics, serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from common.api.errors import error_responses as errors
from common.api.files import file_responses, media_file_response
from common.api.permissions import IsStaffOrReadOnly
from common.api.strict import RejectUnknownFields
from dataset_domain.datasets import dataset_create, dataset_image_add
from dataset_domain.models import Dataset, DatasetImage

DATASET_EXAMPLE: dict[str, Any] = {
    "id": 1,
    "name": "sample",
    "description": "Ten small drawings in several sizes and modes.",
    "image_count": 10,
    "created_at": "2026-11-22T00:00:00Z",
}
DATASET_IMAGE_EXAMPLE: dict[str, Any] = {
    "id": 1,
    "dataset": 1,
    "url": "https://diffusion.example.com/api/v1/datasets/1/images/1/file/",
    "width": 192,
    "height": 128,
    "sha256": "22ac1f2c759d73d7dcfff2260a2e181386a464f7413d4a1eb7817c0aaab84222",
    "created_at": "2026-11-22T00:00:00Z",
}


class DatasetOutput(serializers.ModelSerializer):
    image_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Dataset
        fields = ["id", "name", "description", "image_count", "created_at"]


class DatasetInput(RejectUnknownFields, serializers.Serializer):
    name = serializers.SlugField(max_length=100)
    description = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)


class DatasetImageOutput(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()

    class Meta:
        model = DatasetImage
        fields = ["id", "dataset", "url", "width", "height", "sha256", "created_at"]

    @extend_schema_field(OpenApiTypes.URI)
    def get_url(self, image: DatasetImage) -> str:
        url = reverse("dataset-image-file", args=[image.dataset_id, image.pk])
        request = self.context.get("request")
        return request.build_absolute_uri(url) if request else url


class DatasetImageInput(RejectUnknownFields, serializers.Serializer):
    image = serializers.FileField()


@extend_schema_view(
    get=extend_schema(
        summary="Datasets",
        responses={200: DatasetOutput(many=True), **errors(400, 401)},
        examples=[OpenApiExample("A page of datasets", value=DATASET_EXAMPLE, response_only=True)],
    )
)
class DatasetListView(generics.ListAPIView):
    serializer_class = DatasetOutput
    permission_classes = [IsStaffOrReadOnly]

    def get_queryset(self) -> QuerySet[Dataset]:
        return Dataset.objects.annotate(image_count=Count("images"))

    @extend_schema(
        summary="Create a dataset (staff)",
        request=DatasetInput,
        responses={201: DatasetOutput, **errors(400, 401, 403, 409)},
        examples=[
            OpenApiExample(
                "A new dataset", value={"name": "sketches", "description": "Pencil sketches."}, request_only=True
            ),
            OpenApiExample(
                "The new dataset",
                value={**DATASET_EXAMPLE, "name": "sketches", "description": "Pencil sketches.", "image_count": 0},
                response_only=True,
                status_codes=[201],
            ),
        ],
    )
    def post(self, request: Request) -> Response:
        data = DatasetInput(data=request.data)
        data.is_valid(raise_exception=True)
        dataset = dataset_create(**data.validated_data)
        dataset.image_count = 0
        return Response(DatasetOutput(dataset).data, status=status.HTTP_201_CREATED)


@extend_schema_view(
    get=extend_schema(
        summary="A dataset",
        responses={200: DatasetOutput, **errors(401, 404)},
        examples=[OpenApiExample("A dataset", value=DATASET_EXAMPLE, response_only=True)],
    )
)
class DatasetDetailView(generics.RetrieveAPIView):
    serializer_class = DatasetOutput
    permission_classes = [IsStaffOrReadOnly]

    def get_queryset(self) -> QuerySet[Dataset]:
        return Dataset.objects.annotate(image_count=Count("images"))


@extend_schema_view(
    get=extend_schema(
        summary="A dataset's images",
        description="An unknown dataset has no images: an empty page.",
        responses={200: DatasetImageOutput(many=True), **errors(400, 401)},
        examples=[OpenApiExample("A page of images", value=DATASET_IMAGE_EXAMPLE, response_only=True)],
    )
)
class DatasetImageListView(generics.ListAPIView):
    serializer_class = DatasetImageOutput
    permission_classes = [IsStaffOrReadOnly]
    parser_classes = [MultiPartParser]

    def get_queryset(self) -> QuerySet[DatasetImage]:
        if getattr(self, "swagger_fake_view", False):  # schema generation: no URL kwargs
            return DatasetImage.objects.none()
        return DatasetImage.objects.filter(dataset_id=self.kwargs["pk"]).order_by("id")

    @extend_schema(
        summary="Add an image to a dataset (staff)",
        description="PNG, JPEG, WebP, GIF or BMP; an image already in the dataset is refused.",
        request={"multipart/form-data": DatasetImageInput},
        responses={
            201: OpenApiResponse(
                DatasetImageOutput,
                description="Added.",
                examples=[OpenApiExample("The added image", value=DATASET_IMAGE_EXAMPLE, status_codes=[201])],
            ),
            **errors(400, 401, 403, 404, 409),
        },
    )
    def post(self, request: Request, pk: int) -> Response:
        dataset = get_object_or_404(Dataset, pk=pk)
        data = DatasetImageInput(data=request.data)
        data.is_valid(raise_exception=True)
        image = dataset_image_add(dataset=dataset, file=data.validated_data["image"])
        return Response(DatasetImageOutput(image, context={"request": request}).data, status=status.HTTP_201_CREATED)


class DatasetImageFileView(APIView):
    permission_classes = [IsStaffOrReadOnly]

    @extend_schema(
        responses={
            **file_responses("The dataset image as uploaded."),
            **errors(401, 404),
        },
        summary="A dataset image's file",
    )
    def get(self, request: Request, pk: int, image_pk: int) -> HttpResponse:
        image = get_object_or_404(DatasetImage, pk=image_pk, dataset_id=pk)
        return media_file_response(image.image, filename=image.image.name.rsplit("/", 1)[-1])
