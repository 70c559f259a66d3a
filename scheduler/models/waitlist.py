"""The waitlist: patients waiting for a freed chair, the offers texted to them, and the queue of
"a slot may have freed" rows the worker turns into offers (see services/waitlist.py)."""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import (
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from scheduler.models import Base, Location, Patient, Service, UTCDateTime, utcnow


class WaitlistTimes(enum.StrEnum):
    """Which part of the day suits the patient (local start time: morning is before 12:00)."""

    MORNING = "morning"
    AFTERNOON = "afternoon"
    ANY = "any"


class WaitlistStatus(enum.StrEnum):
    ACTIVE = "active"  # waiting: offered fitting slots
    BOOKED = "booked"  # claimed an offer (or staff booked them from the list)
    LEFT = "left"  # the patient left the list (manage link)


class OfferStatus(enum.StrEnum):
    PENDING = "pending"  # inserted by the worker; its text is due at next_attempt_at
    SENDING = "sending"  # claimed by a worker until lease_until
    SENT = "sent"  # texted; claimable until expires_at
    CLAIMED = "claimed"  # this patient booked the slot
    TAKEN = "taken"  # someone else booked the slot first
    EXPIRED = "expired"  # not claimed in time
    SKIPPED = "skipped"  # not texted: opted out, no consent, the slot went, the entry ended
    FAILED = "failed"  # the provider refused the text (or retries ran out)


# Offers a patient may still act on, or that are on their way to the patient.
LIVE_OFFER_STATUSES = frozenset({OfferStatus.PENDING, OfferStatus.SENDING, OfferStatus.SENT})


class FreedStatus(enum.StrEnum):
    PENDING = "pending"  # to look at, from next_attempt_at
    WORKING = "working"  # claimed by a worker until lease_until
    DONE = "done"  # nothing more to offer for it


class FreedReason(enum.StrEnum):
    CANCELLED = "cancelled"
    MOVED = "moved"
    UNBLOCKED = "unblocked"
    SHIFT = "shift"  # a new shift: more staff capacity
    NO_SHOW = "no_show"


class WaitlistEntry(Base):
    """One patient waiting for `service` at `location` on a local date in earliest..latest.

    Join order is `created_at`, then `id`. A course entry (`course_slug`) waits for its next
    visit: only a slot that keeps the course's rules is offered.
    """

    __tablename__ = "waitlist_entries"
    __table_args__ = (
        CheckConstraint("earliest <= latest", name="date_order"),
        CheckConstraint("times IN ('morning', 'afternoon', 'any')", name="times_known"),
        CheckConstraint("status IN ('active', 'booked', 'left')", name="status_known"),
        # The worker's read: active entries of one service at one location, in join order.
        Index(
            "ix_waitlist_entries_match",
            "location_id",
            "service_id",
            "status",
            "created_at",
            "id",
        ),
        Index("ix_waitlist_entries_patient", "patient_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    location_id: Mapped[int] = mapped_column(ForeignKey("locations.id", ondelete="CASCADE"))
    service_id: Mapped[int] = mapped_column(ForeignKey("services.id", ondelete="CASCADE"))
    # A course's template (its slug), for a patient waiting for the next visit of a course.
    course_slug: Mapped[str | None] = mapped_column(String(64), nullable=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"))
    earliest: Mapped[dt.date] = mapped_column(Date)  # local dates, inclusive
    latest: Mapped[dt.date] = mapped_column(Date)
    times: Mapped[str] = mapped_column(String(16), default=WaitlistTimes.ANY)
    status: Mapped[str] = mapped_column(String(16), default=WaitlistStatus.ACTIVE)
    manage_token: Mapped[str] = mapped_column(String(64), unique=True)
    source: Mapped[str] = mapped_column(String(16), default="online")  # online | staff | api
    appointment_id: Mapped[int | None] = mapped_column(
        ForeignKey("appointments.id", ondelete="SET NULL"), nullable=True
    )
    # Who takes the patient home (services with escort_required); a claim books the visit with
    # them. None: not given (the API may leave it out; the visit then shows it missing).
    escort_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    escort_phone: Mapped[str | None] = mapped_column(String(20), nullable=True)  # E.164
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    location: Mapped[Location] = relationship()
    service: Mapped[Service] = relationship()
    patient: Mapped[Patient] = relationship()


class WaitlistOffer(Base):
    """One slot offered to one entry by SMS; `token` is the last segment of the link.

    Each (entry, slot start) is offered once (the unique constraint), whatever the number of
    workers and crashes. The text is sent like a reminder: claimed under a lease, recorded as
    its answer comes in. `expires_at` is set when the text goes out.
    """

    __tablename__ = "waitlist_offers"
    __table_args__ = (
        UniqueConstraint("entry_id", "slot_start", name="uq_waitlist_offers_entry_slot"),
        Index("ix_waitlist_offers_status_next_attempt", "status", "next_attempt_at"),
        Index("ix_waitlist_offers_location_slot", "location_id", "slot_start"),
        Index("ix_waitlist_offers_provider_sid", "provider_sid"),
        # An SMS reply looks for the latest offer texted to its number (sms_replies).
        Index("ix_waitlist_offers_to_phone_sent", "to_phone", "sent_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("waitlist_entries.id", ondelete="CASCADE"))
    location_id: Mapped[int] = mapped_column(ForeignKey("locations.id", ondelete="CASCADE"))
    slot_start: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    slot_end: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    resource_id: Mapped[int | None] = mapped_column(
        ForeignKey("resources.id", ondelete="SET NULL"), nullable=True
    )
    token: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16), default=OfferStatus.PENDING)
    to_phone: Mapped[str] = mapped_column(String(20), default="")
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claim_token: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    provider_sid: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_code: Mapped[str] = mapped_column(String(16), default="")
    reason: Mapped[str] = mapped_column(String(200), default="")
    freed_id: Mapped[int | None] = mapped_column(
        ForeignKey("waitlist_freed.id", ondelete="SET NULL"), nullable=True
    )
    offered_by_id: Mapped[int | None] = mapped_column(  # staff, for an offer made by hand
        ForeignKey("staff_users.id", ondelete="SET NULL"), nullable=True
    )
    appointment_id: Mapped[int | None] = mapped_column(
        ForeignKey("appointments.id", ondelete="SET NULL"), nullable=True
    )
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    closed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    entry: Mapped[WaitlistEntry] = relationship()


class WaitlistFreed(Base):
    """ "A slot may have freed" at `location` over [start_at, end_at): written in the same
    transaction as the change (cancel, move, unblock, new shift, early no-show); the worker
    claims it, offers what now fits, and looks again after the offers expire."""

    __tablename__ = "waitlist_freed"
    __table_args__ = (
        CheckConstraint("start_at < end_at", name="start_before_end"),
        Index("ix_waitlist_freed_status_next_attempt", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    location_id: Mapped[int] = mapped_column(ForeignKey("locations.id", ondelete="CASCADE"))
    start_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    end_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default=FreedStatus.PENDING)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    rounds: Mapped[int] = mapped_column(Integer, default=0)  # batches offered so far
    claim_token: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    done_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
