"""Domain errors: their messages are safe to show to patients and staff."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error a service raises on purpose."""

    code = "error"
    http_status = 400

    def __init__(self, message: str, fields: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields or {}


class NotFound(DomainError):
    code = "not_found"
    http_status = 404


class InvalidInput(DomainError):
    code = "invalid"
    http_status = 422


class SlotUnavailable(DomainError):
    code = "slot_unavailable"
    http_status = 409


class TooLate(DomainError):
    code = "too_late"
    http_status = 409


class Conflict(DomainError):
    code = "conflict"
    http_status = 409


class Forbidden(DomainError):
    code = "forbidden"
    http_status = 403
