"""Domain errors: their messages are safe to show to patients and staff."""

from __future__ import annotations

from collections.abc import Sequence


class DomainError(Exception):
    """Base of every error a service raises on purpose."""

    code = "error"
    http_status = 400

    def __init__(
        self,
        message: str,
        fields: dict[str, str] | None = None,
        *,
        appointments: Sequence[int] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields or {}
        # The booked visits a refused change would break (shift_in_use, staffing_in_use, blocks).
        self.appointments = list(appointments) if appointments is not None else None


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


class ClinicianBusy(Conflict):
    code = "clinician_busy"


class ShiftInUse(Conflict):
    code = "shift_in_use"


class StaffingInUse(Conflict):
    code = "staffing_in_use"


class ClinicianInUse(Conflict):
    code = "clinician_in_use"


class NotCleared(DomainError):
    """The service needs a prescriber's current clearance, and the patient has none."""

    code = "not_cleared"
    http_status = 409


class TooSoon(DomainError):
    """Closer to another visit of the patient than the services' minimum gap."""

    code = "too_soon"
    http_status = 409
