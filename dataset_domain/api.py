from __future__ import annotations

from django.db.models import Count, QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from dataset_domain.datasets import dataset_create, dataset_image_add
from dataset_domain.models import Dataset, DatasetImage
from image_model_domain.api.permissions import IsStaffOrReadOnly


class DatasetOutput(serializers.ModelSerializer):
    image_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Dataset
        fields = ["id", "name", "description", "image_count", "created_at"]


class DatasetInput(serializers.Serializer):
    name = serializers.SlugField(max_length=100)
    description = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)


class DatasetImageOutput(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()

    class Meta:
        model = DatasetImage
        fields = ["id", "dataset", "url", "width", "height", "sha256", "created_at"]

    def get_url(self, image: DatasetImage) -> str:
        request = self.context.get("request")
        return request.build_absolute_uri(image.image.url) if request else image.image.url


class DatasetImageInput(serializers.Serializer):
    image = serializers.FileField()


class DatasetListView(generics.ListAPIView):
    serializer_class = DatasetOutput
    permission_classes = [IsStaffOrReadOnly]

    def get_queryset(self) -> QuerySet[Dataset]:
        return Dataset.objects.annotate(image_count=Count("images"))

    @extend_schema(
        request=DatasetInput, responses={201: DatasetOutput, 400: OpenApiResponse(description="Invalid input.")}
    )
    def post(self, request: Request) -> Response:
        data = DatasetInput(data=request.data)
        data.is_valid(raise_exception=True)
        dataset = dataset_create(**data.validated_data)
        dataset.image_count = 0
        return Response(DatasetOutput(dataset).data, status=status.HTTP_201_CREATED)


class DatasetDetailView(generics.RetrieveAPIView):
    serializer_class = DatasetOutput
    permission_classes = [IsStaffOrReadOnly]

    def get_queryset(self) -> QuerySet[Dataset]:
        return Dataset.objects.annotate(image_count=Count("images"))


class DatasetImageListView(generics.ListAPIView):
    serializer_class = DatasetImageOutput
    permission_classes = [IsStaffOrReadOnly]
    parser_classes = [MultiPartParser]

    def get_queryset(self) -> QuerySet[DatasetImage]:
        return DatasetImage.objects.filter(dataset_id=self.kwargs["pk"]).order_by("id")

    @extend_schema(
        request={"multipart/form-data": DatasetImageInput},
        responses={201: DatasetImageOutput, 400: OpenApiResponse(description="Not an acceptable image.")},
    )
    def post(self, request: Request, pk: int) -> Response:
        dataset = get_object_or_404(Dataset, pk=pk)
        data = DatasetImageInput(data=request.data)
        data.is_valid(raise_exception=True)
        image = dataset_image_add(dataset=dataset, file=data.validated_data["image"])
        return Response(DatasetImageOutput(image, context={"request": request}).data, status=status.HTTP_201_CREATED)
