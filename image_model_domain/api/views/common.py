"""The answer every view that starts work gives: 202 Accepted with the job and its URL in Location."""

from __future__ import annotations

from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from image_model_domain.api.serializers import JobOutput
from image_model_domain.models import GenerationJob


def accepted(request: Request, job: GenerationJob) -> Response:
    """Answers with the job as the domain function returned it, not read again: its model and owner
    are loaded, job_enqueue recorded the queue position it published and that a new job has no images."""
    response = Response(JobOutput(job, context={"request": request}).data, status=status.HTTP_202_ACCEPTED)
    response["Location"] = request.build_absolute_uri(f"/api/v1/jobs/{job.pk}/")
    return response
