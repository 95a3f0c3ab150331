"""The service's one error shape: ``{"error": {"code": "...", "message": "..."}}`` with an HTTP status."""

from __future__ import annotations

from fastapi.responses import JSONResponse


class ServiceError(Exception):
    """A request the service refuses: HTTP ``status``, a stable machine-readable ``code``, a one-line message."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)
