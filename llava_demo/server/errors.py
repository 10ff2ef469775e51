"""API errors: one exception type carrying the HTTP status and the OpenAI error object, plus the mappings
from image-input and backend errors to it.

Every failure a client can cause or observe ends up as ``{"error": {"message", "type", "code", "param"}}``
with a fitting status, never as a bare 500 with a traceback; the message says what was wrong and where
(``messages[1].content[0]``), which the original demo's "NETWORK ERROR" never did (llava.md §2).
"""

from __future__ import annotations

from typing import Any

from llava_demo.backends.base import BackendError
from vision_common.images.limits import ImageInputError

# The status each ImageInputError code maps to (docs/image_input.md, "Error codes").
IMAGE_ERROR_STATUS: dict[str, int] = {
    "too_large": 413,
    "decompression_bomb": 413,
    "unsupported_format": 415,
    "remote_failed": 502,
    "outside_root": 403,
    "not_found": 404,
}
# OpenAI's error "type" per status class; clients branch on the status, people read the type.
_ERROR_TYPES: dict[int, str] = {
    401: "authentication_error",
    429: "rate_limit_error",
    502: "upstream_error",
    503: "service_unavailable_error",
    504: "timeout_error",
}


def error_type_for(status: int) -> str:
    if status in _ERROR_TYPES:
        return _ERROR_TYPES[status]
    return "invalid_request_error" if 400 <= status < 500 else "server_error"


class ApiError(Exception):
    """A request failed with ``status``; ``body()`` is the JSON error object an OpenAI client understands."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str,
        param: str | None = None,
        error_type: str | None = None,
    ) -> None:
        if not 400 <= status <= 599:
            raise ValueError(f"ApiError status must be 4xx or 5xx, got {status}")
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.error_type = error_type or error_type_for(status)

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "code": self.code,
                "param": self.param,
            }
        }

    def stream_body(self) -> dict[str, Any]:
        """The mid-stream form: SGLang sends ``data: {"error": {"object": "error", ...}}`` (serving.md §3)."""
        body = self.body()
        body["error"]["object"] = "error"
        return body


def from_image_error(error: ImageInputError, param: str) -> ApiError:
    """An image a client sent was rejected: 4xx (413 for bombs, 415 for formats) with the loader's code."""
    status = IMAGE_ERROR_STATUS.get(error.code, 400)
    return ApiError(status, f"{param}: {error}", code=error.code, param=param)


def from_backend_error(error: BackendError) -> ApiError:
    """Backend failures keep their own status (400 overflow, 503 unavailable, 504 timeout) and code."""
    status = getattr(error, "http_status", 500)
    if not isinstance(status, int) or not 400 <= status <= 599:
        status = 500
    message = error.user_message or type(error).__name__
    return ApiError(status, message, code=getattr(error, "code", "backend_error"))


def from_unexpected(error: BaseException) -> ApiError:
    """A bug or an unforeseen failure: still JSON, naming the exception class so it can be reported."""
    return ApiError(500, f"internal error: {type(error).__name__}: {error}", code="internal_error")
