from __future__ import annotations

from django.http import HttpRequest, JsonResponse

from api.http import ApiError, api_view

ALL_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


@api_view(*ALL_METHODS, auth=False)
def not_found(request: HttpRequest) -> JsonResponse:
    raise ApiError(
        404,
        "not_found",
        f"There is no API endpoint at {request.path}. Paths take no trailing slash; "
        "see /api/openapi.json for the endpoints.",
    )
