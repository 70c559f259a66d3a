"""The rota: clinicians, their weekly shift patterns, and one-off changes to them.

A clinician works at a location in a weekly pattern (`ShiftPattern`: weekday, local start and
end); a single day changes with a `ShiftSkip` (leave: that pattern's occurrence is cancelled) or
a one-off `Shift` (an extra shift, or cover at another location), stored as UTC instants. The
shifts of a date range are the patterns expanded in the location's zone with those changes
applied (services/staffing.py). On PostgreSQL an exclusion constraint keeps one clinician's
one-off shifts apart; the service checks them against the expanded patterns under a lock.
"""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Time,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Mapped, mapped_column, relationship

from scheduler.models import (
    ENDS_AFTER_STARTS,
    Base,
    Location,
    StaffUser,
    UTCDateTime,
    utcnow,
)


class ClinicianRole(enum.StrEnum):
    PRESCRIBER = "prescriber"  # physician, NP, CRNA: consultations, oversees infusions
    NURSE = "nurse"


class Clinician(Base):
    """A person who gives care; floats between locations (their shifts say where and when)."""

    __tablename__ = "clinicians"
    __table_args__ = (CheckConstraint("role IN ('prescriber', 'nurse')", name="role_known"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(String(100), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    staff_user_id: Mapped[int | None] = mapped_column(
        ForeignKey("staff_users.id", ondelete="SET NULL"), nullable=True, unique=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    staff_user: Mapped[StaffUser | None] = relationship()


class ShiftPattern(Base):
    """Every `weekday` (0 = Monday) from `starts` to `ends` local time at the location, between
    the optional local dates `valid_from` and `valid_until` (inclusive). `ends` 00:00 = 24:00."""

    __tablename__ = "shift_patterns"
    __table_args__ = (
        CheckConstraint("weekday >= 0 AND weekday <= 6", name="weekday_range"),
        CheckConstraint(
            ENDS_AFTER_STARTS.format(start="starts", end="ends"), name="starts_before_ends"
        ),
        CheckConstraint(
            "valid_from IS NULL OR valid_until IS NULL OR valid_from <= valid_until",
            name="valid_order",
        ),
        Index("ix_shift_patterns_location_weekday", "location_id", "weekday"),
        Index("ix_shift_patterns_clinician", "clinician_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    clinician_id: Mapped[int] = mapped_column(ForeignKey("clinicians.id", ondelete="CASCADE"))
    location_id: Mapped[int] = mapped_column(ForeignKey("locations.id", ondelete="CASCADE"))
    weekday: Mapped[int] = mapped_column(Integer)
    starts: Mapped[dt.time] = mapped_column(Time)
    ends: Mapped[dt.time] = mapped_column(Time)
    valid_from: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    valid_until: Mapped[dt.date | None] = mapped_column(Date, nullable=True)

    clinician: Mapped[Clinician] = relationship()
    location: Mapped[Location] = relationship()


class ShiftSkip(Base):
    """The pattern's occurrence on local date `day` does not happen (leave, or moved as cover)."""

    __tablename__ = "shift_skips"
    __table_args__ = (UniqueConstraint("pattern_id", "day", name="uq_shift_skips_pattern_day"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    pattern_id: Mapped[int] = mapped_column(ForeignKey("shift_patterns.id", ondelete="CASCADE"))
    day: Mapped[dt.date] = mapped_column(Date)
    reason: Mapped[str] = mapped_column(String(200), default="")


class Shift(Base):
    """A one-off shift [start_at, end_at) at a location: an extra day, or cover."""

    __tablename__ = "shifts"
    __table_args__ = (
        CheckConstraint("start_at < end_at", name="start_before_end"),
        Index("ix_shifts_location_end", "location_id", "end_at"),
        Index("ix_shifts_clinician_end", "clinician_id", "end_at"),
        postgresql.ExcludeConstraint(
            ("clinician_id", "="),
            (text("tstzrange(start_at, end_at, '[)')"), "&&"),
            using="gist",
            name="no_clinician_overlap",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    clinician_id: Mapped[int] = mapped_column(ForeignKey("clinicians.id", ondelete="CASCADE"))
    location_id: Mapped[int] = mapped_column(ForeignKey("locations.id", ondelete="CASCADE"))
    start_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    end_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    note: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    clinician: Mapped[Clinician] = relationship()
    location: Mapped[Location] = relationship()
