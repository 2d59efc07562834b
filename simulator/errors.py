"""Errors the simulated API answers with, shaped like the real API's error bodies."""

from __future__ import annotations

import json
from typing import Any

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


class ApiError(Exception):
    """An error answer: HTTP status, error type, message and extra response headers."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type or ERROR_TYPES.get(status, "api_error")
        self.headers = dict(headers or {})

    def body(self, request_id: str | None) -> dict[str, Any]:
        return {
            "type": "error",
            "error": {"type": self.error_type, "message": self.message},
            "request_id": request_id,
        }

    def encode(self, request_id: str | None) -> bytes:
        return json.dumps(self.body(request_id)).encode()


def invalid(message: str) -> ApiError:
    """400 invalid_request_error."""
    return ApiError(400, message)


class SimulatedTimeout(Exception):
    """The answer would take longer than the caller's read timeout.

    Raised by the in-process path after sleeping for the timeout, so the transport
    can raise the same timeout exception a real socket read would.
    """
