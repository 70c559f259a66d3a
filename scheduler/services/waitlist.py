"""The waitlist: patients waiting for a freed chair, and the offers that fill it.

Interface (names kept stable for the pages and the worker):

  Joining and leaving (patient pages, API)
    JoinRequest                                  what a patient asks for (frozen dataclass)
    join(session, request, *, now, settings) -> WaitlistEntry
    leave(session, token, *, now) -> WaitlistEntry          by the entry's manage_token
    get_entry(session, token) -> WaitlistEntry
  Staff
    entries_for_location(session, location, *, status=ACTIVE, today=None) -> list[WaitlistEntry]
    offers_for_entries(session, entry_ids) -> dict[int, list[WaitlistOffer]]
    offer_by_hand(session, entry, start, *, now, settings, staff) -> WaitlistOffer
  The offer link (claim page, API)
    offer_url(settings, token) -> str           PUBLIC_BASE_URL + /waitlist/offers/{token}
    get_offer(session, token, *, now) -> OfferView   the offer, its entry and slot, its state
    claim(session, token, *, now, settings) -> Appointment   Conflict code taken / expired
  Triggers (inside the changing transaction; they only write a queue row)
    queue_freed(session, location_id, start, end, *, reason, now) -> WaitlistFreed
    appointment_freed(session, appointment, change, *, now, previous=None) -> None
  Worker (scheduler.jobs decides the transactions)
    process_freed(session, *, now, settings, batch, token, lease_until) -> int   offers made
    claim_offers(session, now, *, token, lease_until, limit) -> list[OutgoingOffer]
    prepare_offer(session, item, now) -> str | None        None: send it; else why not
    deliver_offer(item, sender, settings) -> SendResult    HTTP only, no database
    record_offer_sent(session, item, result, now, settings) -> bool
    record_offer_error(session, item, exc, now) -> str
    release_offers(session, token) -> int
    expire_offers(session, now) -> int

Rules: a slot is offered when the availability engine offers that start for the entry's
service (duration, buffers, opening hours, staffing) and the patient may have it
(clearance and spacing: `patients.check_visit`; no overlapping visit of their own). Offers go
in join order, at most `settings.waitlist_batch` entries per freed slot at a time; when they
expire unclaimed the worker looks at the slot again and offers it to the next ones. Each
(entry, slot start) is offered once: the unique constraint, inserted with ON CONFLICT DO
NOTHING. A claim books through `booking.book` (the only writer of appointments): the first
claim wins, the others get Conflict `taken` and stay on the list.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy.orm import Session

from scheduler.models import (
    Appointment,
    Location,
    Service,
    StaffUser,
    WaitlistEntry,
    WaitlistFreed,
    WaitlistOffer,
    WaitlistStatus,
)
from scheduler.services.errors import Conflict
from scheduler.services.patients import PatientDetails
from scheduler.services.settings import ClinicSettings
from scheduler.services.sms import SendResult, SmsError, SmsSender

UTC = dt.UTC
OFFER_PATH = "/waitlist/offers/"


class OfferTaken(Conflict):
    """Someone else booked the slot first; the entry stays on the list."""

    code = "taken"


class OfferExpired(Conflict):
    """The offer was not claimed in time."""

    code = "expired"


@dataclass(frozen=True)
class JoinRequest:
    location: str  # slug
    service: str | None  # slug; or
    course: str | None  # a course template's slug (course entries)
    patient: PatientDetails
    earliest: dt.date  # local dates, inclusive
    latest: dt.date
    times: str = "any"  # morning | afternoon | any
    source: str = "online"  # online | staff | api


@dataclass(frozen=True)
class OfferView:
    """What the claim page shows: the offer, its entry, the slot and whether it still stands."""

    offer: WaitlistOffer
    entry: WaitlistEntry
    location: Location
    service: Service
    start: dt.datetime  # UTC
    end: dt.datetime
    expired: bool  # not claimable any more: its time ran out
    taken: bool  # someone else has the slot (or it is no longer free)
    claimed: bool  # this patient booked it
    appointment_id: int | None  # the visit booked by claiming it


@dataclass(frozen=True)
class OutgoingOffer:
    """A claimed offer text, with what the text needs (never logged)."""

    id: int
    token: str  # the worker's claim token
    offer_token: str  # the link's token
    phone: str
    first_name: str
    shared_phone: bool
    timezone: str
    location: str  # the location's name
    start: dt.datetime
    attempts: int


# --- joining and leaving --------------------------------------------------------------------------


def join(
    session: Session, request: JoinRequest, *, now: dt.datetime, settings: ClinicSettings
) -> WaitlistEntry:
    """Put the patient on the location's waitlist for the service (or course); InvalidInput
    naming the field for a bad date range, unknown times, or a course (not supported)."""
    raise NotImplementedError


def get_entry(session: Session, token: str) -> WaitlistEntry:
    """The entry with this manage token, or NotFound."""
    raise NotImplementedError


def leave(session: Session, token: str, *, now: dt.datetime) -> WaitlistEntry:
    """The patient leaves the list: the entry becomes `left` and its live offers are withdrawn.
    Leaving twice is fine; NotFound for an unknown token."""
    raise NotImplementedError


# --- staff ----------------------------------------------------------------------------------------


def entries_for_location(
    session: Session,
    location: Location,
    *,
    status: WaitlistStatus | None = WaitlistStatus.ACTIVE,
    today: dt.date | None = None,
) -> list[WaitlistEntry]:
    """The location's entries in join order (patient and service loaded); `status` None: all;
    `today`: only entries whose latest date is not before it."""
    raise NotImplementedError


def offers_for_entries(session: Session, entry_ids: list[int]) -> dict[int, list[WaitlistOffer]]:
    """Each entry's offers, newest first (for the staff page)."""
    raise NotImplementedError


def offer_by_hand(
    session: Session,
    entry: WaitlistEntry,
    start: dt.datetime,
    *,
    now: dt.datetime,
    settings: ClinicSettings,
    staff: StaffUser,
) -> WaitlistOffer:
    """Staff offer `start` to `entry`: checked like the worker's offers (the engine offers the
    start, the patient may have it), then texted by the worker. Conflict when already offered."""
    raise NotImplementedError


# --- the offer link -------------------------------------------------------------------------------


def offer_url(settings: ClinicSettings, token: str) -> str:
    """The link texted with an offer (the claim page)."""
    return f"{settings.public_base_url}{OFFER_PATH}{token}"


def get_offer(session: Session, token: str, *, now: dt.datetime) -> OfferView:
    """The offer with this token and its state, or NotFound (also before it was texted)."""
    raise NotImplementedError


def claim(
    session: Session, token: str, *, now: dt.datetime, settings: ClinicSettings
) -> Appointment:
    """Book the offered slot for the entry's patient through `booking.book`.

    OfferExpired (409 `expired`) after the offer's time; OfferTaken (409 `taken`) when the slot
    is gone (the entry stays active). On success the entry is booked and the other live offers
    of that slot are marked taken.
    """
    raise NotImplementedError


# --- triggers -------------------------------------------------------------------------------------


def queue_freed(
    session: Session,
    location_id: int,
    start: dt.datetime,
    end: dt.datetime,
    *,
    reason: str,
    now: dt.datetime,
) -> WaitlistFreed:
    """Record that [start, end) at the location may have room now (inside the caller's
    transaction; the worker looks at it after commit)."""
    raise NotImplementedError


def appointment_freed(
    session: Session,
    appointment: Appointment,
    change: str,
    *,
    now: dt.datetime,
    previous: tuple[dt.datetime, dt.datetime] | None = None,
) -> None:
    """Queue what a visit change frees: a cancel, a no-show recorded before the visit ends,
    or a move (`previous`: the occupied interval it left). Other changes free nothing."""
    raise NotImplementedError


# --- worker ---------------------------------------------------------------------------------------


def process_freed(
    session: Session,
    *,
    now: dt.datetime,
    settings: ClinicSettings,
    batch: int,
    token: str,
    lease_until: dt.datetime,
) -> int:
    """Claim up to `batch` due freed rows and insert the offers they owe (pending, texted by
    the send step); returns how many offers were inserted. The caller commits."""
    raise NotImplementedError


def claim_offers(
    session: Session, now: dt.datetime, *, token: str, lease_until: dt.datetime, limit: int
) -> list[OutgoingOffer]:
    """Mark up to `limit` due offer texts as ours (`sending`) and load them; the caller
    commits. Rows of a worker whose lease ran out are taken over."""
    raise NotImplementedError


def prepare_offer(session: Session, item: OutgoingOffer, now: dt.datetime) -> str | None:
    """Decide one claimed text before sending: None to send it now; else the outcome recorded
    (`skipped`: opted out, no consent, the slot or entry went; `deferred`: quiet hours)."""
    raise NotImplementedError


def deliver_offer(item: OutgoingOffer, sender: SmsSender, settings: ClinicSettings) -> SendResult:
    """Hand one offer text to the provider (no database); raises SmsError."""
    raise NotImplementedError


def record_offer_sent(
    session: Session,
    item: OutgoingOffer,
    result: SendResult,
    now: dt.datetime,
    settings: ClinicSettings,
) -> bool:
    """The text went: `sent`, claimable until now + the offer time. False when the row was
    no longer ours."""
    raise NotImplementedError


def record_offer_error(
    session: Session, item: OutgoingOffer, exc: SmsError, now: dt.datetime
) -> str:
    """A failed send: `failed` for good, or pending again with backoff; returns the outcome."""
    raise NotImplementedError


def release_offers(session: Session, token: str) -> int:
    """Hand back texts claimed under `token` and not sent (the worker is stopping)."""
    raise NotImplementedError


def expire_offers(session: Session, now: dt.datetime) -> int:
    """Mark sent offers past their time as expired; returns how many."""
    raise NotImplementedError
