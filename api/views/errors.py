from __future__ import annotations

from django.http import HttpRequest, JsonResponse

from api.http import ApiError, plain_view


@plain_view
def not_found(request: HttpRequest) -> JsonResponse:
    raise ApiError(
        404,
        "not_found",
        f"There is no API endpoint at {request.path}. Paths take no trailing slash; "
        "see /api/openapi.json for the endpoints.",
    )
