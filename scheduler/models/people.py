"""Patients' clinical gates: a prescriber's clearance for a service, until a date."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Date, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from scheduler.models import Base, Patient, Service, UTCDateTime, utcnow


class Clearance(Base):
    """A prescriber cleared `patient` for `service` up to and including the local date `until`."""

    __tablename__ = "clearances"
    __table_args__ = (Index("ix_clearances_patient_service", "patient_id", "service_id", "until"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"))
    service_id: Mapped[int] = mapped_column(ForeignKey("services.id", ondelete="CASCADE"))
    until: Mapped[dt.date] = mapped_column(Date)
    recorded_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("staff_users.id", ondelete="SET NULL"), nullable=True
    )
    recorded_by_name: Mapped[str] = mapped_column(String(200), default="")
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    patient: Mapped[Patient] = relationship()
    service: Mapped[Service] = relationship()


class VisitCode(Base):
    """The one-time code a patient asks for to see their visits ("my visits"), per phone.

    Only a hash of the code is kept. Sends are rate-limited per phone; wrong codes count up to
    a lock (`locked_until`).
    """

    __tablename__ = "visit_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    phone: Mapped[str] = mapped_column(String(20), unique=True)  # E.164
    code_hash: Mapped[str] = mapped_column(String(64), default="")
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    window_start: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    sends: Mapped[int] = mapped_column(Integer, default=0)  # in the hour from window_start
    last_sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
