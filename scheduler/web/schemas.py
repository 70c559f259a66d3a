"""Pydantic models for the JSON API: they validate input and generate the OpenAPI document."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    RootModel,
    ValidationInfo,
    field_validator,
)
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

from scheduler.services import booking
from scheduler.services.clock import EARLIEST_DATE, LATEST_DATE, in_supported_range
from scheduler.services.day_of import Escort
from scheduler.services.errors import InvalidInput
from scheduler.services.patients import PatientDetails, normalize_email, normalize_phone
from scheduler.web.inputs import MAX_ID

RANGE = f"between {EARLIEST_DATE} and {LATEST_DATE}"


def _day_in_range(value: dt.date) -> dt.date:
    if not in_supported_range(value):
        raise PydanticCustomError("date_range", "must be " + RANGE)
    return value


def _instant_in_range(value: dt.datetime) -> dt.datetime:
    _day_in_range(value.date())
    return value


_ISO_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]")
INSTANT_MESSAGE = "must be an ISO 8601 date and time with an offset"


def _iso_string(value: object) -> object:
    """An instant is a string: a JSON number (or a string of digits) is not read as a Unix
    timestamp, whatever pydantic would make of it."""
    if not isinstance(value, str) or not _ISO_DATE_TIME.match(value):
        raise PydanticCustomError("instant_type", INSTANT_MESSAGE)
    return value


_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}$")


def _date_string(value: object) -> object:
    """A date is a YYYY-MM-DD string: a JSON number is not read as a Unix timestamp."""
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if not isinstance(value, str) or not _ISO_DATE.match(value):
        raise PydanticCustomError("date_type", "must be a date as YYYY-MM-DD")
    return value


def _boolean(value: object) -> object:
    """A boolean is JSON true or false, never "yes", 1 or "on"."""
    if not isinstance(value, bool):
        raise PydanticCustomError("bool_type", "must be true or false")
    return value


# Every date and instant the API reads is inside the supported range (else 4xx naming it).
Day = Annotated[
    dt.date,
    BeforeValidator(_date_string),
    AfterValidator(_day_in_range),
    Field(description="YYYY-MM-DD, " + RANGE),
]
# A date whose range the service checks (a birth date, a clearance's last day): text only.
DateText = Annotated[dt.date, BeforeValidator(_date_string), Field(description="YYYY-MM-DD")]
Instant = Annotated[
    AwareDatetime,
    BeforeValidator(_iso_string),
    AfterValidator(_instant_in_range),
    Field(description="ISO 8601 with a UTC offset, " + RANGE),
]


# Every boolean a body carries: JSON true or false only.
Flag = Annotated[bool, BeforeValidator(_boolean)]


def _json_integer(value: object) -> object:
    """An id in a body is a JSON integer: true is not 1, and "8" is not 8."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise PydanticCustomError("int_type", "must be an integer")
    return value


# A row id: what the integer columns can hold (a larger one names nothing: 4xx, not a 500).
_ID_RANGE = Field(ge=1, le=MAX_ID)
# In a JSON body: an integer only (booleans and strings are refused, naming the field).
Id = Annotated[int, BeforeValidator(_json_integer), _ID_RANGE]
# In a query string, where every value is text: digits.
QueryId = Annotated[int, _ID_RANGE]


def _service_check(field: str, check: object, value: str) -> str:
    """Run a service's normalizer so its verdict comes in the same round as the rest."""
    try:
        check(value)  # type: ignore[operator]
    except InvalidInput as exc:
        raise PydanticCustomError(field, exc.fields.get(field, "is not valid")) from exc
    return value


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)


class _ExactIn(BaseModel):
    """The bodies of the clinicians, shifts and staffing endpoints: an unknown key is refused
    (422 naming it) rather than ignored, so a misspelt field is not silently dropped."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class PatientIn(_In):
    name: str = Field(min_length=1, max_length=200)
    phone: str = Field(min_length=1, max_length=40)
    email: str = Field(min_length=3, max_length=320)
    date_of_birth: DateText | None = None  # required for services that need clearance

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str) -> str:
        return _service_check("phone", normalize_phone, value)

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        return _service_check("email", normalize_email, value)

    def details(self, sms_consent: bool) -> PatientDetails:
        """These details as the booking, course and waitlist services take them."""
        return PatientDetails(self.name, self.phone, self.email, sms_consent, self.date_of_birth)


class EscortIn(_In):
    """Who takes the patient home (services with `escort_required`)."""

    name: str = Field(default="", max_length=200)
    phone: str = Field(default="", max_length=40)

    def escort(self) -> Escort:
        return Escort(self.name, self.phone)


class AppointmentIn(_In):
    location: str = Field(min_length=1, max_length=64)
    service: str = Field(min_length=1, max_length=64)
    start: Instant
    patient: PatientIn
    sms_consent: Flag = False
    note: str = Field(default="", max_length=2000)
    clinician: Id | None = None
    # Staff (with their API token) may book a patient without a current clearance; audited.
    override_clearance: Flag = False
    # Optional for API clients (v1 stays valid); a visit of an escort_required service without
    # one is answered with "escort_missing": true and flagged to staff.
    escort: EscortIn | None = None

    @field_validator("start")
    @classmethod
    def _future(cls, value: dt.datetime, info: ValidationInfo) -> dt.datetime:
        now = (info.context or {}).get("now")
        if now is not None:
            try:
                booking.require_future(value, now)
            except InvalidInput as exc:
                raise PydanticCustomError("start", exc.fields["start"]) from exc
        return value


class RescheduleIn(_In):
    start: Instant


class BlockIn(_In):
    resource: str = Field(min_length=1, max_length=100)
    start: Instant
    end: Instant
    reason: str = Field(default="", max_length=500)


class StatusIn(_In):
    status: Literal["booked", "checked_in", "completed", "no_show", "cancelled"]
    reason: str = Field(default="", max_length=500)


class AvailabilityQuery(_In):
    service: str = Field(min_length=1, max_length=64)
    from_: Day | None = Field(default=None, alias="from")
    days: int = Field(default=7, ge=1)
    clinician: QueryId | None = None


class CalendarQuery(_In):
    date: Day | None = None


class LocationOut(BaseModel):
    slug: str
    name: str
    timezone: str
    address: str
    phone: str


class InstructionsOut(BaseModel):
    fasting_hours: int = 0
    arrive_early_minutes: int = 0
    no_driving: bool = False


class EscortOut(BaseModel):
    name: str
    phone: str


class ServiceOut(BaseModel):
    slug: str
    name: str
    kind: Literal["consultation", "infusion"]
    duration_minutes: int
    description: str
    what_to_bring: str
    requires_clearance: bool = False
    min_gap_hours: int = 0
    escort_required: bool = False
    instructions: InstructionsOut = Field(default_factory=InstructionsOut)


class SlotOut(BaseModel):
    start: str
    end: str
    resources_free: int
    clinicians: list[int] | None = None  # consultations: the prescribers free then


class AvailabilityOut(BaseModel):
    location: str
    service: str
    timezone: str
    slots: list[SlotOut]


class ResourceOut(BaseModel):
    kind: str
    name: str


class ClinicianRef(BaseModel):
    id: int
    name: str


class CourseRef(BaseModel):
    id: int
    session: int  # 1-based
    sessions: int


class AppointmentOut(BaseModel):
    id: int
    status: str
    start: str
    end: str
    timezone: str
    location: str
    service: str
    resource: ResourceOut
    manage_token: str
    manage_url: str
    clinician: ClinicianRef | None = None  # present when one is assigned
    # With a clinician: whether they were chosen at booking (a move keeps them) or assigned
    # for "any prescriber" (a move takes whoever is free then).
    clinician_chosen: bool | None = None
    escort: EscortOut | None = None  # present when one was given
    escort_missing: bool = False
    ride_confirmed: bool = False
    course: CourseRef | None = None  # present for a session of a treatment course
    awaiting_review: bool = False  # held (chair reserved) until the course's review continues


class StatusOut(BaseModel):
    status: str


class PatientOut(BaseModel):
    name: str
    phone: str
    email: str


class CalendarAppointmentOut(BaseModel):
    id: int
    status: str
    start: str
    end: str
    occupied_start: str
    occupied_end: str
    service: str
    patient: PatientOut
    note: str
    clinician: ClinicianRef | None = None  # a consultation's prescriber
    nurse: ClinicianRef | None = None  # an infusion's nurse
    escort: EscortOut | None = None
    escort_missing: bool = False
    confirmed: bool = False
    ride_confirmed: bool = False
    course: CourseRef | None = None  # a session of a treatment course
    course_progress: str | None = None  # the course's "3 of 6" (sessions held of the course's)
    awaiting_review: bool = False


class ReadyOut(BaseModel):
    id: int
    escort_notified_at: str
    already_sent: bool  # true: an earlier call queued the text; this one sent nothing


class BlockOut(BaseModel):
    id: int
    resource: str
    start: str
    end: str
    reason: str


class CalendarResourceOut(BaseModel):
    name: str
    kind: str
    appointments: list[CalendarAppointmentOut]
    blocks: list[BlockOut]


class ShiftClinicianOut(BaseModel):
    id: int
    name: str
    role: str


class ShiftOut(BaseModel):
    id: str
    clinician: ShiftClinicianOut
    start: str
    end: str


class NurseLoadOut(BaseModel):
    start: str  # from this instant until the next entry (or the end of the day)
    patients: int  # infusions in their occupied interval
    capacity: int  # patients_per_nurse x nurses on shift


class CalendarOut(BaseModel):
    date: str
    timezone: str
    resources: list[CalendarResourceOut]
    shifts: list[ShiftOut] = []
    nurse_load: list[NurseLoadOut] = []


class PublicClinicianOut(BaseModel):
    id: int
    name: str
    role: str
    title: str


class ClinicianOut(PublicClinicianOut):
    active: bool
    staff_user: int | None = None  # the linked staff user's id


class ClinicianIn(_ExactIn):
    name: str = Field(min_length=1, max_length=200)
    role: Literal["prescriber", "nurse"]
    title: str = Field(default="", max_length=100)
    staff_user: Id | None = None


class ClinicianPatchIn(_ExactIn):
    """Any of these; `staff_user` null unlinks. The role cannot change (add a new clinician)."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    title: str | None = Field(default=None, max_length=100)
    active: Flag | None = None
    staff_user: Id | None = None
    role: SkipJsonSchema[None] = None

    @field_validator("name", "title", "active")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise PydanticCustomError("null", "must not be null")
        return value

    @field_validator("role", mode="before")
    @classmethod
    def _fixed_role(cls, value: object) -> object:
        raise PydanticCustomError("fixed", "cannot be changed (add a new clinician)")


class ClinicianQuery(_In):
    service: str = Field(min_length=1, max_length=64)


class ShiftsQuery(_In):
    from_: Day = Field(alias="from")
    to: Day


class ShiftIn(_ExactIn):
    clinician: Id
    start: Instant
    end: Instant


class StaffingIn(_ExactIn):
    model_config = ConfigDict(extra="forbid", strict=True)
    rules: Flag | None = None
    patients_per_nurse: int | None = Field(default=None, ge=1, le=20)
    starts_per_window: int | None = Field(default=None, ge=1, le=50)
    start_window_minutes: int | None = Field(default=None, ge=1, le=240)


class StaffingOut(BaseModel):
    rules: bool
    patients_per_nurse: int
    starts_per_window: int
    start_window_minutes: int


class StaffAppointmentOut(BaseModel):
    id: int
    status: str
    start: str
    end: str
    location: str
    service: str
    resource: ResourceOut


# --- patients -------------------------------------------------------------------------------------


class PatientsQuery(_In):
    q: str = Field(min_length=1, max_length=100)


class PatientSummaryOut(BaseModel):
    id: int
    name: str
    date_of_birth: dt.date | None
    phone: str
    email: str


class PatientAppointmentOut(BaseModel):
    id: int
    status: str
    start: str
    end: str
    location: str
    service: str


class ClearanceOut(BaseModel):
    id: int
    service: str
    until: dt.date
    recorded_by: str
    note: str
    created_at: str


class PatientRecordOut(PatientSummaryOut):
    notes: str
    sms_consent: bool
    sms_opted_out: bool
    appointments: list[PatientAppointmentOut]
    clearances: list[ClearanceOut]


class ClearancesIn(_In):
    services: list[str] = Field(min_length=1, max_length=20)
    until: DateText
    note: str = Field(default="", max_length=2000)


class ClearancesOut(BaseModel):
    clearances: list[ClearanceOut]


class MergeIn(_In):
    duplicate: int = Field(ge=1, le=2**31 - 1)


class PatientPatchIn(_In):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    phone: str | None = Field(default=None, min_length=1, max_length=40)
    email: str | None = Field(default=None, min_length=3, max_length=320)
    date_of_birth: DateText | None = None
    notes: str | None = Field(default=None, max_length=5000)


class UtilisationQuery(_In):
    from_: Day = Field(alias="from", description="first local date")
    to: Day = Field(description="last local date (inclusive; at most 92 days after from)")


class UtilisationCellOut(BaseModel):
    weekday: int = Field(description="0 = Monday")
    hour: int = Field(description="local hour, 0-23")
    open_chair_minutes: int
    booked_chair_minutes: int
    nurse_capacity_minutes: int
    nurse_load_minutes: int


class UtilisationOut(BaseModel):
    timezone: str
    cells: list[UtilisationCellOut]
    no_show_rate: float | None = Field(description="no-shows / visits due in the range")
    late_cancel_rate: float | None = Field(
        description="cancellations inside the late-cancel window / visits starting in the range"
    )


# --- treatment courses ----------------------------------------------------------------------------


class CourseTemplateOut(BaseModel):
    slug: str
    name: str
    service: str
    sessions: int
    min_gap_hours: int
    max_gap_hours: int
    within_days: int
    review_after: int | None  # sessions after this one wait for a clinician's decision
    weekdays: str | None = None  # "mon,wed,fri", "consecutive_weekdays", or null for any day
    description: str = ""


class CoursePlanIn(_In):
    location: str = Field(min_length=1, max_length=64)
    course: str = Field(min_length=1, max_length=64)
    first_start: Instant


class PlannedSessionOut(BaseModel):
    start: str
    end: str
    moved: str | None = None  # why this session is not at the first one's local time


class CoursePlanOut(BaseModel):
    location: str
    course: str
    timezone: str
    sessions: list[PlannedSessionOut]


class CourseIn(_In):
    location: str = Field(min_length=1, max_length=64)
    course: str = Field(min_length=1, max_length=64)
    starts: list[Instant] = Field(min_length=1, max_length=30)
    patient: PatientIn
    sms_consent: Flag = False
    note: str = Field(default="", max_length=2000)
    escort: EscortIn | None = None


class CourseOut(BaseModel):
    id: int
    course: str  # the template's slug
    name: str
    status: str  # active | stopped | cancelled | completed
    review_state: str  # none | pending | continued | stopped
    review_after: int | None
    progress: str  # "3 of 6"
    location: str
    timezone: str
    appointments: list[AppointmentOut]
    manage_token: str
    manage_url: str


class ManageOut(RootModel[AppointmentOut | CourseOut]):
    """An appointment, or (for a course's token) the course: told apart by `appointments`."""


class ManageCancelOut(BaseModel):
    status: str
    # A course's token: the sessions cancelled, and those kept inside the late-cancel window.
    cancelled: list[int] | None = None
    kept_late: list[AppointmentOut] | None = None


class ReviewIn(_In):
    decision: Literal["continue", "stop"]


# --- waitlist -------------------------------------------------------------------------------------


class WaitlistIn(_In):
    location: str = Field(min_length=1, max_length=64)
    service: str | None = Field(default=None, min_length=1, max_length=64)
    # Or a course template's slug: waiting to start that course (its first session is offered
    # only where the whole course fits from it; the claim books the course).
    course: str | None = Field(default=None, min_length=1, max_length=64)
    patient: PatientIn
    # Required, and must be true: offers come by SMS only (false or absent: 422 naming it).
    sms_consent: Flag = Field(
        description="Required and must be true: waitlist offers are sent by SMS only; "
        "false or absent is refused with 422 naming `sms_consent`."
    )
    earliest: Day
    latest: Day
    times: Literal["morning", "afternoon", "any"] = "any"
    # For an escort_required service: who takes the patient home, used when an offer is
    # claimed. Optional (v1 stays valid); without it the booked visit shows its escort missing.
    escort: EscortIn | None = None


class WaitlistJoinOut(BaseModel):
    id: int
    manage_token: str


class WaitlistQuery(_In):
    status: Literal["active", "booked", "left", "all"] = "active"


class WaitlistOfferIn(_In):
    start: Instant


class WaitlistOfferOut(BaseModel):
    id: int
    start: str
    end: str
    status: str
    by_hand: bool
    sent_at: str | None
    expires_at: str | None
    appointment: int | None


class WaitlistPatientOut(BaseModel):
    id: int
    name: str
    phone: str


class WaitlistEntryOut(BaseModel):
    id: int
    service: str
    course: str | None = None  # a course template's slug (waiting to start that course)
    patient: WaitlistPatientOut
    earliest: dt.date
    latest: dt.date
    times: str
    status: str
    joined_at: str
    appointment: int | None
    offers: list[WaitlistOfferOut]
