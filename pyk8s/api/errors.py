"""Typed API errors and their upstream-shaped `Status` objects.

Every failure the API server reports is an `ApiError`; the HTTP layer turns it into a
`kind: Status` body with the same code, reason and message shapes as upstream
(`k8s.io/apimachinery/pkg/api/errors`).
"""
from __future__ import annotations

from typing import Any, TypedDict


class StatusCause(TypedDict, total=False):
    reason: str
    message: str
    field: str


class ApiError(Exception):
    code: int = 500
    reason: str = "InternalError"

    def __init__(self, message: str, *, code: int | None = None, reason: str | None = None,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if reason is not None:
            self.reason = reason
        self.details = details
        self.headers: dict[str, str] = {}

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": self.message, "reason": self.reason,
        }
        if self.details:
            out["details"] = self.details
        out["code"] = self.code
        return out


def _details(name: str | None, group: str, kind: str,
             causes: list[StatusCause] | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {}
    if name:
        d["name"] = name
    if group:
        d["group"] = group
    d["kind"] = kind
    if causes:
        d["causes"] = causes
    return d


def _qualified(group: str, resource: str) -> str:
    return f"{resource}.{group}" if group else resource


class BadRequest(ApiError):
    code, reason = 400, "BadRequest"


class Unauthorized(ApiError):
    code, reason = 401, "Unauthorized"


class Forbidden(ApiError):
    code, reason = 403, "Forbidden"


class NotFound(ApiError):
    code, reason = 404, "NotFound"

    @classmethod
    def of(cls, group: str, resource: str, name: str) -> "NotFound":
        return cls(f'{_qualified(group, resource)} "{name}" not found',
                   details=_details(name, group, resource))


class MethodNotAllowed(ApiError):
    code, reason = 405, "MethodNotAllowed"


class NotAcceptable(ApiError):
    code, reason = 406, "NotAcceptable"


class AlreadyExists(ApiError):
    code, reason = 409, "AlreadyExists"

    @classmethod
    def of(cls, group: str, resource: str, name: str) -> "AlreadyExists":
        return cls(f'{_qualified(group, resource)} "{name}" already exists',
                   details=_details(name, group, resource))


class Conflict(ApiError):
    code, reason = 409, "Conflict"

    @classmethod
    def of(cls, group: str, resource: str, name: str, why: str) -> "Conflict":
        return cls(f'Operation cannot be fulfilled on {_qualified(group, resource)} "{name}": {why}',
                   details=_details(name, group, resource))


class Gone(ApiError):
    code, reason = 410, "Gone"


class Expired(ApiError):
    code, reason = 410, "Expired"


class RequestEntityTooLarge(ApiError):
    code, reason = 413, "RequestEntityTooLarge"


class UnsupportedMediaType(ApiError):
    code, reason = 415, "UnsupportedMediaType"


class Invalid(ApiError):
    code, reason = 422, "Invalid"

    @classmethod
    def of(cls, group: str, kind: str, name: str, causes: list[StatusCause]) -> "Invalid":
        """Upstream: `Deployment.apps "x" is invalid: [spec.replicas: Invalid value: ..., ...]`."""
        parts = [f"{c['field']}: {c['message']}" if c.get("field") else c["message"]
                 for c in causes]
        joined = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
        return cls(f'{_qualified(group, kind)} "{name}" is invalid: {joined}',
                   details=_details(name, group, kind, causes))


class TooManyRequests(ApiError):
    code, reason = 429, "TooManyRequests"


class InternalError(ApiError):
    code, reason = 500, "InternalError"

    @classmethod
    def of(cls, message: str) -> "InternalError":
        """Upstream's apierrors.NewInternalError(err)."""
        return cls(f"Internal error occurred: {message}",
                   details={"causes": [{"message": message}]})


class ServiceUnavailable(ApiError):
    code, reason = 503, "ServiceUnavailable"


class Timeout(ApiError):
    code, reason = 504, "Timeout"


def cause(field: str, message: str, reason: str = "FieldValueInvalid") -> StatusCause:
    return {"reason": reason, "message": message, "field": field}


def field_invalid(field: str, value: Any, detail: str) -> StatusCause:
    """Upstream `field.Invalid`: message `Invalid value: "x": detail`."""
    return cause(field, f"Invalid value: {_fmt(value)}: {detail}", "FieldValueInvalid")


def field_required(field: str, detail: str = "") -> StatusCause:
    return cause(field, "Required value" + (f": {detail}" if detail else ""),
                 "FieldValueRequired")


def field_duplicate(field: str, value: Any) -> StatusCause:
    return cause(field, f"Duplicate value: {_fmt(value)}", "FieldValueDuplicate")


def field_not_supported(field: str, value: Any, supported: list[str]) -> StatusCause:
    opts = ", ".join(f'"{s}"' for s in supported)
    return cause(field, f"Unsupported value: {_fmt(value)}: supported values: {opts}",
                 "FieldValueNotSupported")


def field_forbidden(field: str, detail: str) -> StatusCause:
    return cause(field, f"Forbidden: {detail}", "FieldValueForbidden")


def _fmt(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)
