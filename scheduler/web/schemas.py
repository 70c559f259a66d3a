"""Pydantic models for the JSON API: they validate input and generate the OpenAPI document."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)


class PatientIn(_In):
    name: str = Field(min_length=1, max_length=200)
    phone: str = Field(min_length=1, max_length=40)
    email: str = Field(min_length=3, max_length=320)
    date_of_birth: dt.date | None = None  # YYYY-MM-DD; required for services that need clearance


class AppointmentIn(_In):
    location: str = Field(min_length=1, max_length=64)
    service: str = Field(min_length=1, max_length=64)
    start: AwareDatetime
    patient: PatientIn
    sms_consent: bool = False
    note: str = Field(default="", max_length=2000)
    clinician: int | None = Field(default=None, ge=1)
    # Staff (with their API token) may book a patient without a current clearance; audited.
    override_clearance: bool = False


class RescheduleIn(_In):
    start: AwareDatetime


class BlockIn(_In):
    resource: str = Field(min_length=1, max_length=100)
    start: AwareDatetime
    end: AwareDatetime
    reason: str = Field(default="", max_length=500)


class StatusIn(_In):
    status: Literal["booked", "checked_in", "completed", "no_show", "cancelled"]
    reason: str = Field(default="", max_length=500)


class AvailabilityQuery(_In):
    service: str = Field(min_length=1, max_length=64)
    from_: dt.date | None = Field(default=None, alias="from")
    days: int = Field(default=7, ge=1)
    clinician: int | None = Field(default=None, ge=1)


class CalendarQuery(_In):
    date: dt.date | None = None


class LocationOut(BaseModel):
    slug: str
    name: str
    timezone: str
    address: str
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


class ClinicianIn(_In):
    name: str = Field(min_length=1, max_length=200)
    role: Literal["prescriber", "nurse"]
    title: str = Field(default="", max_length=100)


class ClinicianQuery(_In):
    service: str = Field(min_length=1, max_length=64)


class ShiftsQuery(_In):
    from_: dt.date = Field(alias="from")
    to: dt.date


class ShiftIn(_In):
    clinician: int = Field(ge=1)
    start: AwareDatetime
    end: AwareDatetime


class StaffingIn(_In):
    model_config = ConfigDict(extra="forbid", strict=True)
    rules: bool | None = None
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
    until: dt.date
    note: str = Field(default="", max_length=2000)


class ClearancesOut(BaseModel):
    clearances: list[ClearanceOut]


class MergeIn(_In):
    duplicate: int = Field(ge=1, le=2**31 - 1)


class PatientPatchIn(_In):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    phone: str | None = Field(default=None, min_length=1, max_length=40)
    email: str | None = Field(default=None, min_length=3, max_length=320)
    date_of_birth: dt.date | None = None
    notes: str | None = Field(default=None, max_length=5000)
