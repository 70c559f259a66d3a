"""Database models: the clinic (locations, hours, resources, services), patients, appointments.

A package: new aggregates (rota, courses, waitlist) get a module of their own here, imported at
the end of this file so that `from scheduler.models import X` keeps working for every model.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any, ClassVar

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    Time,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

UTC = dt.UTC

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[dt.datetime]):
    """An aware UTC instant on every database (SQLite stores naive UTC, returned aware)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given for a UTC column")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def result_processor(self, dialect: Any, coltype: Any) -> Any:
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)
        # SQLite returns the stored text ("YYYY-MM-DD HH:MM:SS.ffffff", naive UTC): one C parse
        # with the offset appended gives the aware instant directly (measured here: 0.27 us
        # against 2.5 us for parse-then-replace(tzinfo)); the availability of a busy month
        # spends most of its time turning rows into instants.
        parse = dt.datetime.fromisoformat

        def process(value: str | None) -> dt.datetime | None:
            return None if value is None else parse(value + "+00:00")

        return process


def utcnow() -> dt.datetime:
    return dt.datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    __table__: ClassVar[Table]  # every model here maps one table (Core statements use it)


class ResourceKind(enum.StrEnum):
    CHAIR = "chair"
    ROOM = "room"


class ServiceKind(enum.StrEnum):
    CONSULTATION = "consultation"
    INFUSION = "infusion"


class AppointmentStatus(enum.StrEnum):
    BOOKED = "booked"
    CHECKED_IN = "checked_in"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    NO_SHOW = "no_show"


# Statuses that hold the resource: the database constraint only looks at these rows.
ACTIVE_STATUSES = frozenset(
    {AppointmentStatus.BOOKED, AppointmentStatus.CHECKED_IN, AppointmentStatus.COMPLETED}
)


class StaffRole(enum.StrEnum):
    ADMIN = "admin"
    MANAGER = "manager"
    FRONT_DESK = "front_desk"
    NURSE = "nurse"
    PRESCRIBER = "prescriber"  # a prescriber's own account: records clearances


service_locations = Table(
    "service_locations",
    Base.metadata,
    Column("service_id", ForeignKey("services.id", ondelete="CASCADE"), primary_key=True),
    Column("location_id", ForeignKey("locations.id", ondelete="CASCADE"), primary_key=True),
)

staff_locations = Table(
    "staff_locations",
    Base.metadata,
    Column("staff_id", ForeignKey("staff_users.id", ondelete="CASCADE"), primary_key=True),
    Column("location_id", ForeignKey("locations.id", ondelete="CASCADE"), primary_key=True),
)


class Location(Base):
    __tablename__ = "locations"
    __table_args__ = (
        CheckConstraint("patients_per_nurse >= 1", name="patients_per_nurse_positive"),
        CheckConstraint("starts_per_window >= 1", name="starts_per_window_positive"),
        CheckConstraint("start_window_minutes >= 1", name="start_window_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64))
    address: Mapped[str] = mapped_column(String(500), default="")
    phone: Mapped[str] = mapped_column(String(32), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Staffing rules (see services/staffing.py). Off unless turned on: a location created in the
    # settings (and the demo's) turns them on; a location migrated from before them keeps them off
    # until a manager has entered the rota. Defaults from common infusion-centre practice: one
    # nurse to four patients, at most three starts in any 30 minutes.
    staffing_rules: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    patients_per_nurse: Mapped[int] = mapped_column(Integer, default=4, server_default="4")
    starts_per_window: Mapped[int] = mapped_column(Integer, default=3, server_default="3")
    start_window_minutes: Mapped[int] = mapped_column(Integer, default=30, server_default="30")

    hours: Mapped[list[OpeningHours]] = relationship(
        back_populates="location", cascade="all, delete-orphan", order_by="OpeningHours.weekday"
    )
    closures: Mapped[list[Closure]] = relationship(
        back_populates="location", cascade="all, delete-orphan"
    )
    resources: Mapped[list[Resource]] = relationship(
        back_populates="location", cascade="all, delete-orphan", order_by="Resource.position"
    )
    services: Mapped[list[Service]] = relationship(
        secondary=service_locations, back_populates="locations"
    )


# A closing (or shift end) time of 00:00 means midnight at the end of the day ("24:00"). The
# check compares with '00:00:01' so it reads the same on PostgreSQL (a time) and SQLite (text).
ENDS_AFTER_STARTS = "{start} < {end} OR {end} < '00:00:01'"


def end_of_day(day: dt.date, end: dt.time) -> dt.datetime:
    """The naive local wall-clock end of an interval that ends at `end` on `day` (00:00 = 24:00)."""
    if end == dt.time(0):
        return dt.datetime.combine(day + dt.timedelta(days=1), end)
    return dt.datetime.combine(day, end)


class OpeningHours(Base):
    """One opening interval on a weekday (0 = Monday), local wall-clock time; several per day.

    `closes` 00:00 is midnight at the end of the day (entered as 24:00).
    """

    __tablename__ = "opening_hours"
    __table_args__ = (
        CheckConstraint("weekday >= 0 AND weekday <= 6", name="weekday_range"),
        CheckConstraint(
            ENDS_AFTER_STARTS.format(start="opens", end="closes"), name="opens_before_closes"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    location_id: Mapped[int] = mapped_column(ForeignKey("locations.id", ondelete="CASCADE"))
    weekday: Mapped[int] = mapped_column(Integer)
    opens: Mapped[dt.time] = mapped_column(Time)
    closes: Mapped[dt.time] = mapped_column(Time)

    location: Mapped[Location] = relationship(back_populates="hours")


class Closure(Base):
    """The location is closed on the local dates first_day..last_day (inclusive)."""

    __tablename__ = "closures"
    __table_args__ = (CheckConstraint("first_day <= last_day", name="day_order"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    location_id: Mapped[int] = mapped_column(ForeignKey("locations.id", ondelete="CASCADE"))
    first_day: Mapped[dt.date] = mapped_column(Date)
    last_day: Mapped[dt.date] = mapped_column(Date)
    reason: Mapped[str] = mapped_column(String(200), default="")

    location: Mapped[Location] = relationship(back_populates="closures")


class Resource(Base):
    """An infusion chair or a consult room at one location."""

    __tablename__ = "resources"
    __table_args__ = (UniqueConstraint("location_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    location_id: Mapped[int] = mapped_column(ForeignKey("locations.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(100))
    position: Mapped[int] = mapped_column(Integer, default=0)
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    location: Mapped[Location] = relationship(back_populates="resources")


class Service(Base):
    """What a patient books: how long it takes, what it needs, and the rules around it."""

    __tablename__ = "services"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    resource_kind: Mapped[str] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(Text, default="")
    what_to_bring: Mapped[str] = mapped_column(Text, default="")
    duration_minutes: Mapped[int] = mapped_column(Integer)
    prep_minutes: Mapped[int] = mapped_column(Integer, default=0)
    recovery_minutes: Mapped[int] = mapped_column(Integer, default=0)
    slot_step_minutes: Mapped[int] = mapped_column(Integer, default=15)
    min_notice_minutes: Mapped[int] = mapped_column(Integer, default=120)
    horizon_days: Mapped[int] = mapped_column(Integer, default=60)
    late_cancel_hours: Mapped[int] = mapped_column(Integer, default=24)
    # Shown in calendar titles and SMS instead of the clinic default; empty keeps messages discreet.
    public_title: Mapped[str] = mapped_column(String(200), default="")
    reminder_offsets: Mapped[str] = mapped_column(String(100), default="")
    # A prescriber's current clearance for this service comes first (infusions).
    requires_clearance: Mapped[bool] = mapped_column(Boolean, default=False)
    # The least time between the starts of two such visits of one patient (0: no rule).
    min_gap_hours: Mapped[int] = mapped_column(Integer, default=0)
    # The patient needs an adult to take them home: the booking asks for the escort.
    escort_required: Mapped[bool] = mapped_column(Boolean, default=False)
    # Pre-visit instructions (0 / False: none): shown on the confirmation page, in the invite
    # and in the day-before text.
    fasting_hours: Mapped[int] = mapped_column(Integer, default=0)
    arrive_early_minutes: Mapped[int] = mapped_column(Integer, default=0)
    no_driving: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    locations: Mapped[list[Location]] = relationship(
        secondary=service_locations, back_populates="services"
    )


class Patient(Base):
    """A person: several people may share one phone (a family) and stay separate.

    `match_key` is how a booking finds them again: the normalized name and the birth date
    (`services.patients.match_key`), unique per phone. Rows from before birth dates were asked
    have an unknown date (`name|`); see `services.patients.find_or_create`.
    """

    __tablename__ = "patients"
    __table_args__ = (
        UniqueConstraint("phone", "match_key"),
        # PostgreSQL: trigram indexes answer the staff search's substring matches.
        Index(
            "ix_patients_name_key_trgm",
            "name_key",
            postgresql_using="gin",
            postgresql_ops={"name_key": "gin_trgm_ops"},
        ),
        Index(
            "ix_patients_phone_trgm",
            "phone",
            postgresql_using="gin",
            postgresql_ops={"phone": "gin_trgm_ops"},
        ),
        Index(
            "ix_patients_email_trgm",
            "email",
            postgresql_using="gin",
            postgresql_ops={"email": "gin_trgm_ops"},
        ),
        Index("ix_patients_date_of_birth", "date_of_birth"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    phone: Mapped[str] = mapped_column(String(20), index=True)  # E.164
    email: Mapped[str] = mapped_column(String(320))  # normalized, lower-case domain
    date_of_birth: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    name_key: Mapped[str] = mapped_column(String(200), default="")  # accents, case, spaces out
    match_key: Mapped[str] = mapped_column(String(240), default="")
    notes: Mapped[str] = mapped_column(Text, default="")
    # A merged duplicate stays as an alias of the record kept, so its spelling still finds them.
    merged_into_id: Mapped[int | None] = mapped_column(
        ForeignKey("patients.id", ondelete="SET NULL"), nullable=True
    )
    sms_consent: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Appointment(Base):
    """One visit occupying one resource; keeps a snapshot of what it was booked with."""

    __tablename__ = "appointments"
    __table_args__ = (
        CheckConstraint("start_at < end_at", name="start_before_end"),
        CheckConstraint("occupied_start <= start_at AND end_at <= occupied_end", name="occupied"),
        # (resource_id, occupied_end) finds a chair's visits still to come; the other columns
        # are what availability reads of them, so that read never visits the table.
        Index(
            "ix_appointments_resource_visits",
            "resource_id",
            "occupied_end",
            "occupied_start",
            "active",
            "start_at",
            "service_id",
            "end_at",
            "clinician_id",
        ),
        Index("ix_appointments_location_start", "location_id", "start_at"),
        postgresql.ExcludeConstraint(
            ("resource_id", "="),
            (text("tstzrange(occupied_start, occupied_end, '[)')"), "&&"),
            where=text("active"),
            using="gist",
            name="no_double_booking",
        ),
        postgresql.ExcludeConstraint(
            ("patient_id", "="),
            (text("tstzrange(start_at, end_at, '[)')"), "&&"),
            where=text("active"),
            using="gist",
            name="no_patient_overlap",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    location_id: Mapped[int] = mapped_column(ForeignKey("locations.id"))
    resource_id: Mapped[int] = mapped_column(ForeignKey("resources.id"))
    service_id: Mapped[int] = mapped_column(ForeignKey("services.id"))
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    start_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    end_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    occupied_start: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    occupied_end: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    duration_minutes: Mapped[int] = mapped_column(Integer)
    prep_minutes: Mapped[int] = mapped_column(Integer)
    recovery_minutes: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default=AppointmentStatus.BOOKED)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    manage_token: Mapped[str] = mapped_column(String(64), unique=True)
    ics_uid: Mapped[str] = mapped_column(String(200), unique=True)
    ics_sequence: Mapped[int] = mapped_column(Integer, default=0)
    note: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(String(16), default="online")
    # The consultation's prescriber, or the nurse who watches an infusion (None before rotas).
    clinician_id: Mapped[int | None] = mapped_column(
        ForeignKey("clinicians.id", ondelete="SET NULL"), nullable=True
    )
    nurse_id: Mapped[int | None] = mapped_column(
        ForeignKey("clinicians.id", ondelete="SET NULL"), nullable=True
    )
    # The patient (or staff) chose this consultation's prescriber: a move keeps them. False:
    # booked for "any prescriber", a move takes whoever is free (booking.move_clinician).
    clinician_chosen: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    cancel_reason: Mapped[str] = mapped_column(String(500), default="")
    confirmed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Who takes the patient home (services with escort_required); None: not given.
    escort_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    escort_phone: Mapped[str | None] = mapped_column(String(20), nullable=True)  # E.164
    ride_confirmed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # When staff asked for the "ready" text to the escort (once per visit).
    escort_notified_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    cancelled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # A session of a treatment course (models/courses.py): which course, which session (from 1),
    # and whether it waits for the course's review (chair held, no reminders until continued).
    course_id: Mapped[int | None] = mapped_column(
        ForeignKey("courses.id", ondelete="SET NULL"), nullable=True, index=True
    )
    course_session: Mapped[int | None] = mapped_column(Integer, nullable=True)
    awaiting_review: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    location: Mapped[Location] = relationship()
    resource: Mapped[Resource] = relationship()
    service: Mapped[Service] = relationship()
    patient: Mapped[Patient] = relationship()
    clinician: Mapped[Clinician | None] = relationship(foreign_keys=[clinician_id])
    nurse: Mapped[Clinician | None] = relationship(foreign_keys=[nurse_id])


class ResourceBlock(Base):
    """A resource out of service for [start_at, end_at)."""

    __tablename__ = "resource_blocks"
    __table_args__ = (
        CheckConstraint("start_at < end_at", name="start_before_end"),
        Index("ix_resource_blocks_resource_start", "resource_id", "start_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    resource_id: Mapped[int] = mapped_column(ForeignKey("resources.id", ondelete="CASCADE"))
    start_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    end_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(String(500), default="")
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("staff_users.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    resource: Mapped[Resource] = relationship()


class StaffUser(Base):
    __tablename__ = "staff_users"
    # Addresses are stored lower-case (services/staff.py::normalize_staff_email), so the unique
    # e-mail is unique whatever the case typed: `ADMIN@x` beside `admin@x` cannot exist.
    __table_args__ = (CheckConstraint("email = lower(email)", name="email_lowercase"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(200), default="")
    role: Mapped[str] = mapped_column(String(16), default=StaffRole.FRONT_DESK)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Part of every session's id: raising it (on deactivation) ends the user's sessions for good.
    session_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    locations: Mapped[list[Location]] = relationship(secondary=staff_locations)
    tokens: Mapped[list[ApiToken]] = relationship(
        back_populates="staff", cascade="all, delete-orphan"
    )

    def can_access(self, location_id: int) -> bool:
        if not self.active:
            return False
        if self.role == StaffRole.ADMIN:
            return True
        return any(loc.id == location_id for loc in self.locations)


class ApiToken(Base):
    """A staff API token; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)

    staff: Mapped[StaffUser] = relationship(back_populates="tokens")


class SignInFailure(Base):
    """Failed staff sign-ins for one typed e-mail address, known or not (so neither shows).

    `key` is a SHA-256 of the normalized address: the table never holds the address itself.
    """

    __tablename__ = "sign_in_failures"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    locked_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class IdempotencyRecord(Base):
    """The first response to a request made with an Idempotency-Key."""

    __tablename__ = "idempotency_records"
    __table_args__ = (UniqueConstraint("scope", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    scope: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(200))
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    response_body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


# --- mail outbox and calendar feeds (invites) -----------------------------------------------------


class MailStatus(enum.StrEnum):
    PENDING = "pending"  # waiting for its next attempt (next_attempt_at)
    SENDING = "sending"  # claimed by a worker (claimed_at, claim_token)
    SENT = "sent"
    FAILED = "failed"  # refused for good, or out of attempts
    SUPERSEDED = "superseded"  # a newer invite for the same visit went out first


class MailOutbox(Base):
    """One e-mail, rendered when the change was committed and delivered after it, with retries."""

    __tablename__ = "mail_outbox"
    __table_args__ = (Index("ix_mail_outbox_status_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    appointment_id: Mapped[int | None] = mapped_column(
        ForeignKey("appointments.id", ondelete="CASCADE"), nullable=True, index=True
    )
    kind: Mapped[str] = mapped_column(String(32), default="invite")
    method: Mapped[str] = mapped_column(String(16), default="")  # iTIP method of the invite
    ics_sequence: Mapped[int | None] = mapped_column(Integer, nullable=True)
    envelope_from: Mapped[str] = mapped_column(String(320))
    recipient: Mapped[str] = mapped_column(String(320))
    # What to say, as JSON taken at the change; rendered into `message` (RFC 5322) on the first
    # claim, outside the booking transaction, then kept so every retry sends the same bytes.
    payload: Mapped[str | None] = mapped_column(Text, nullable=True)
    message: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    status: Mapped[str] = mapped_column(String(16), default=MailStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    claimed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    claim_token: Mapped[str | None] = mapped_column(String(32), nullable=True)
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_error: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class CalendarFeed(Base):
    """A secret staff subscription URL for a location (or one chair); only its SHA-256 is kept."""

    __tablename__ = "calendar_feeds"

    id: Mapped[int] = mapped_column(primary_key=True)
    location_id: Mapped[int] = mapped_column(ForeignKey("locations.id", ondelete="CASCADE"))
    resource_id: Mapped[int | None] = mapped_column(
        ForeignKey("resources.id", ondelete="CASCADE"), nullable=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str] = mapped_column(String(100), default="")
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("staff_users.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)

    location: Mapped[Location] = relationship()
    resource: Mapped[Resource | None] = relationship()


# --- reminders and SMS ----------------------------------------------------------------------------


class ReminderStatus(enum.StrEnum):
    PENDING = "pending"  # planned; due at next_attempt_at
    SENDING = "sending"  # claimed by a worker until lease_until
    SENT = "sent"  # accepted by the provider
    DELIVERED = "delivered"  # the provider's status callback said so
    FAILED = "failed"  # permanent error, undelivered, or retries exhausted
    CANCELLED = "cancelled"  # the visit was cancelled or moved
    SKIPPED = "skipped"  # its time had passed, no consent, opted out, or visit changed


class ReminderKind(enum.StrEnum):
    REMINDER = "reminder"  # "your visit is on ...; reply C"
    DAY_BEFORE = "day_before"  # instructions; "reply YES to confirm the visit and your ride"
    ESCORT_READY = "escort_ready"  # to the escort: the patient is ready to be picked up
    COURSE_STOPPED = "course_stopped"  # the course was stopped at its review: sessions cancelled


class Reminder(Base):
    """One SMS about one appointment, due at an instant; the worker claims and sends it.

    `to_phone` is the number it goes to (the patient's, or the escort's for `escort_ready`);
    replies from a number refer to the latest text sent to it (`sms_replies`)."""

    __tablename__ = "reminders"
    __table_args__ = (
        Index("ix_reminders_status_next_attempt", "status", "next_attempt_at"),
        Index("ix_reminders_appointment", "appointment_id"),
        Index("ix_reminders_provider_sid", "provider_sid"),
        Index("ix_reminders_to_phone_sent", "to_phone", "sent_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    appointment_id: Mapped[int] = mapped_column(ForeignKey("appointments.id", ondelete="CASCADE"))
    # The visit's start when this reminder was planned: the worker sends only if it still holds.
    appointment_start_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    offset_minutes: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16), default=ReminderKind.REMINDER)
    to_phone: Mapped[str] = mapped_column(String(20), default="")
    due_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)  # after quiet hours
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)  # due_at, later on retry
    status: Mapped[str] = mapped_column(String(16), default=ReminderStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claim_token: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    provider_sid: Mapped[str | None] = mapped_column(String(64), nullable=True)
    provider_status: Mapped[str] = mapped_column(String(20), default="")
    error_code: Mapped[str] = mapped_column(String(16), default="")
    reason: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    failed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    closed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)

    appointment: Mapped[Appointment] = relationship()


class SmsOptOut(Base):
    """A phone number's SMS opt-out state (STOP and the other opt-out words; START resumes)."""

    __tablename__ = "sms_opt_outs"

    id: Mapped[int] = mapped_column(primary_key=True)
    phone: Mapped[str] = mapped_column(String(20), unique=True)  # E.164
    opted_out: Mapped[bool] = mapped_column(Boolean, default=True)
    keyword: Mapped[str] = mapped_column(String(16), default="")
    changed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class SmsInbound(Base):
    """What an inbound SMS did (its keyword's action, never its text); MessageSid de-duplicates."""

    __tablename__ = "sms_inbound"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_sid: Mapped[str] = mapped_column(String(64), unique=True)
    phone: Mapped[str] = mapped_column(String(20), index=True)
    action: Mapped[str] = mapped_column(
        String(16)
    )  # confirm|offer_reply|opt_out|opt_in|help|unknown
    # The text this reply answered (the latest sent to the number within the reply window).
    reminder_id: Mapped[int | None] = mapped_column(
        ForeignKey("reminders.id", ondelete="SET NULL"), nullable=True
    )
    appointment_id: Mapped[int | None] = mapped_column(
        ForeignKey("appointments.id", ondelete="SET NULL"), nullable=True, index=True
    )
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


# --- staff portal (audit log) ---------------------------------------------------------------------


class AuditEntry(Base):
    """Who did what to which appointment or setting, and when (names kept as they were then)."""

    __tablename__ = "audit_entries"
    __table_args__ = (
        Index("ix_audit_entries_appointment", "appointment_id", "at"),
        Index("ix_audit_entries_location", "location_id", "at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    staff_id: Mapped[int | None] = mapped_column(
        ForeignKey("staff_users.id", ondelete="SET NULL"), nullable=True
    )
    staff_name: Mapped[str] = mapped_column(String(200), default="")
    location_id: Mapped[int | None] = mapped_column(
        ForeignKey("locations.id", ondelete="SET NULL"), nullable=True
    )
    appointment_id: Mapped[int | None] = mapped_column(
        ForeignKey("appointments.id", ondelete="SET NULL"), nullable=True
    )
    patient_id: Mapped[int | None] = mapped_column(
        ForeignKey("patients.id", ondelete="SET NULL"), nullable=True, index=True
    )
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(200), default="")
    details: Mapped[str] = mapped_column(Text, default="")


# --- models in modules of their own: people (clearances, visit codes), rota, courses ------------

from scheduler.models.courses import Course as Course  # noqa: E402
from scheduler.models.courses import CourseStatus as CourseStatus  # noqa: E402
from scheduler.models.courses import CourseTemplate as CourseTemplate  # noqa: E402
from scheduler.models.courses import ReviewState as ReviewState  # noqa: E402
from scheduler.models.courses import WeekdayPattern as WeekdayPattern  # noqa: E402
from scheduler.models.people import Clearance as Clearance  # noqa: E402
from scheduler.models.people import VisitCode as VisitCode  # noqa: E402
from scheduler.models.rota import (  # noqa: E402  (rota's models need the ones above)
    Clinician as Clinician,
)
from scheduler.models.rota import ClinicianRole as ClinicianRole  # noqa: E402
from scheduler.models.rota import Shift as Shift  # noqa: E402
from scheduler.models.rota import ShiftPattern as ShiftPattern  # noqa: E402
from scheduler.models.rota import ShiftSkip as ShiftSkip  # noqa: E402
from scheduler.models.waitlist import LIVE_OFFER_STATUSES as LIVE_OFFER_STATUSES  # noqa: E402
from scheduler.models.waitlist import FreedReason as FreedReason  # noqa: E402
from scheduler.models.waitlist import FreedStatus as FreedStatus  # noqa: E402
from scheduler.models.waitlist import OfferStatus as OfferStatus  # noqa: E402
from scheduler.models.waitlist import WaitlistEntry as WaitlistEntry  # noqa: E402
from scheduler.models.waitlist import WaitlistFreed as WaitlistFreed  # noqa: E402
from scheduler.models.waitlist import WaitlistOffer as WaitlistOffer  # noqa: E402
from scheduler.models.waitlist import WaitlistStatus as WaitlistStatus  # noqa: E402
from scheduler.models.waitlist import WaitlistTimes as WaitlistTimes  # noqa: E402
