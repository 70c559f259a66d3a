"""Treatment courses: a protocol of sessions of one service (template) and a patient's booking of it.

A course's sessions are ordinary appointments (`Appointment.course_id`, `course_session`,
`awaiting_review`), written by the booking service like any other visit.
"""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from scheduler.models import Base, Location, Patient, Service, StaffUser, UTCDateTime, utcnow


class CourseStatus(enum.StrEnum):
    ACTIVE = "active"  # sessions ahead
    STOPPED = "stopped"  # a clinician stopped it at the review point
    CANCELLED = "cancelled"  # the patient (or staff) cancelled the rest
    COMPLETED = "completed"  # every session held


class ReviewState(enum.StrEnum):
    NONE = "none"  # the template has no review point
    PENDING = "pending"  # sessions after the review point are held, waiting for a decision
    CONTINUED = "continued"
    STOPPED = "stopped"


class WeekdayPattern(enum.StrEnum):
    """Special weekday patterns; otherwise `CourseTemplate.weekdays` lists days ("mon,wed,fri")."""

    CONSECUTIVE_WEEKDAYS = "consecutive_weekdays"


class CourseTemplate(Base):
    """How a course of one service is spaced: sessions, gaps, window, weekday pattern, review."""

    __tablename__ = "course_templates"
    __table_args__ = (
        CheckConstraint("sessions >= 1", name="sessions_positive"),
        CheckConstraint("min_gap_hours >= 0", name="min_gap_nonnegative"),
        CheckConstraint("max_gap_hours >= min_gap_hours", name="gap_order"),
        CheckConstraint("within_days >= 1", name="within_days_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    service_id: Mapped[int] = mapped_column(ForeignKey("services.id", ondelete="CASCADE"))
    sessions: Mapped[int] = mapped_column(Integer)
    # Between the starts of two consecutive sessions.
    min_gap_hours: Mapped[int] = mapped_column(Integer, default=0)
    max_gap_hours: Mapped[int] = mapped_column(Integer)
    # Every session starts before the first one's local date + within_days.
    within_days: Mapped[int] = mapped_column(Integer)
    # None: any day; "mon,wed,fri": those weekdays; "consecutive_weekdays": Mon-Fri in a row.
    weekdays: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Sessions after this one wait for a clinician's decision (None: no review point).
    review_after: Mapped[int | None] = mapped_column(Integer, nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    service: Mapped[Service] = relationship()


class Course(Base):
    """One patient's booking of a template at one location; its sessions are appointments."""

    __tablename__ = "courses"

    id: Mapped[int] = mapped_column(primary_key=True)
    template_id: Mapped[int] = mapped_column(ForeignKey("course_templates.id"))
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    location_id: Mapped[int] = mapped_column(ForeignKey("locations.id"))
    # How many sessions were booked (the template may be edited later).
    sessions: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default=CourseStatus.ACTIVE)
    manage_token: Mapped[str] = mapped_column(String(64), unique=True)
    review_state: Mapped[str] = mapped_column(String(16), default=ReviewState.NONE)
    reviewed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    reviewed_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("staff_users.id", ondelete="SET NULL"), nullable=True
    )
    reviewed_by_name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    template: Mapped[CourseTemplate] = relationship()
    patient: Mapped[Patient] = relationship()
    location: Mapped[Location] = relationship()
    reviewed_by: Mapped[StaffUser | None] = relationship()
