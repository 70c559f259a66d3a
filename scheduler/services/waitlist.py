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
    latest_offer_text(session, phone, *, since, now) -> WaitlistOffer | None   (SMS replies)
    render_offer_reply(session, offer, *, now, settings) -> str   the answer to a C or YES
    claim(session, token, *, now, settings) -> Appointment   Conflict code taken / expired
  Triggers (inside the changing transaction; they only write a queue row)
    queue_freed(session, location_id, start, end, *, reason, now) -> WaitlistFreed | None
    pattern_added(session, location, pattern, *, now) -> int   a weekly shift's occurrences
    appointment_freed(session, appointment, change, *, now, previous=None) -> None
  Worker (scheduler.jobs decides the transactions)
    process_freed(session, *, now, settings, batch, token, lease_until, claimed=None) -> int
    claim_offers(session, now, *, token, lease_until, limit) -> list[OutgoingOffer]
    prepare_offer(session, item, now) -> str | None        None: send it; else why not
    deliver_offer(item, sender, settings) -> SendResult    HTTP only, no database
    record_offer_sent(session, item, result, now, settings) -> bool
    render_offer(item, settings) -> str
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
import functools
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, exists, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, joinedload

from scheduler.models import (
    LIVE_OFFER_STATUSES,
    Appointment,
    AppointmentStatus,
    CourseTemplate,
    FreedReason,
    FreedStatus,
    Location,
    OfferStatus,
    Patient,
    Service,
    ShiftPattern,
    SmsOptOut,
    StaffUser,
    WaitlistEntry,
    WaitlistFreed,
    WaitlistOffer,
    WaitlistStatus,
    WaitlistTimes,
    service_locations,
)
from scheduler.services import availability, booking, patients, reminders
from scheduler.services.day_of import Escort, validate_escort
from scheduler.services.errors import (
    Conflict,
    DomainError,
    InvalidInput,
    NotCleared,
    NotFound,
    SlotUnavailable,
    TooSoon,
)
from scheduler.services.patients import PatientDetails, validate_details
from scheduler.services.settings import ClinicSettings
from scheduler.services.sms import SendResult, SmsError, SmsSender

UTC = dt.UTC
OFFER_PATH = "/waitlist/offers/"
NOON = dt.time(12, 0)
FREED = WaitlistFreed.__table__
OFFERS = WaitlistOffer.__table__
MAX_ATTEMPTS = reminders.MAX_ATTEMPTS
ENTRY_CHUNK = 64  # entries read at a time, in join order, while looking for a batch
MAX_ROUNDS = 5  # looks for the next entries after concurrent workers' offers won
LIVE = tuple(s.value for s in LIVE_OFFER_STATUSES)
# Why an offer is not texted, or is withdrawn after it was: its number opted out (STOP).
OPTED_OUT = "opted out"


class OfferTaken(Conflict):
    """Someone else booked the slot first; the entry stays on the list."""

    code = "taken"


class AlreadyBooked(Conflict):
    """The entry already booked from another offer: one booking per entry."""

    code = "already_booked"


class OfferExpired(Conflict):
    """The offer was not claimed in time (or the patient left the list)."""

    code = "expired"


@dataclass(frozen=True)
class JoinRequest:
    location: str  # slug
    service: str | None  # slug; or
    course: str | None  # a course template's slug (course entries: not supported yet)
    patient: PatientDetails
    earliest: dt.date  # local dates, inclusive
    latest: dt.date
    times: str = WaitlistTimes.ANY.value  # morning | afternoon | any
    source: str = "online"  # online | staff | api
    escort: Escort | None = None  # who takes the patient home (escort_required services)
    # The patient pages ask for the escort of an escort_required service; the API (v1 clients)
    # may leave it out: a visit booked from the entry is then shown as missing its escort.
    require_escort: bool = False


@dataclass(frozen=True)
class PlannedVisit:
    """One session of a course offer's plan."""

    start: dt.datetime  # UTC
    end: dt.datetime
    moved: str | None  # why it is not at the first session's time on the expected day


@dataclass(frozen=True)
class OfferView:
    """What the claim page shows: the offer, its entry, the slot and whether it still stands."""

    offer: WaitlistOffer
    entry: WaitlistEntry
    location: Location
    service: Service
    start: dt.datetime  # UTC
    end: dt.datetime
    expired: bool  # its time ran out (or the patient left the list) before a claim
    taken: bool  # someone else has the slot (or it is no longer free)
    claimed: bool  # this patient booked it
    appointment_id: int | None  # the visit booked by claiming it
    # The entry booked from another offer: this one is withdrawn (checked before expired).
    already_booked: bool = False
    # Its number opted out of texts (STOP) after it was texted: withdrawn (expired too).
    withdrawn: bool = False
    # A course entry: the whole course planned from this start (empty: a single visit, or no
    # plan fits any more).
    plan: tuple[PlannedVisit, ...] = ()
    course_name: str = ""

    @property
    def claimable(self) -> bool:
        return not (self.expired or self.taken or self.claimed or self.already_booked)


@dataclass(frozen=True)
class OutgoingOffer:
    """A claimed offer text and what the text needs (never logged)."""

    id: int
    token: str  # the worker's claim token
    offer_token: str  # the link's token
    attempts: int
    phone: str
    patient_name: str
    shared_phone: bool  # several patients have this number: the text names the patient
    timezone: str
    location: str  # the location's name
    title: str  # the service's public title ("" keeps the text discreet)
    start: dt.datetime
    sessions: int = 1  # a course entry: the number of visits claiming books (the first at start)


def fits_times(times: str, start: dt.datetime, tz: ZoneInfo) -> bool:
    """Morning: a local start before 12:00; afternoon: from 12:00; any: any."""
    if times == WaitlistTimes.ANY:
        return True
    morning = start.astimezone(tz).time() < NOON
    return morning if times == WaitlistTimes.MORNING else not morning


def _times_for(start: dt.datetime, tz: ZoneInfo) -> str:
    return (
        WaitlistTimes.MORNING.value
        if start.astimezone(tz).time() < NOON
        else WaitlistTimes.AFTERNOON.value
    )


# --- joining and leaving --------------------------------------------------------------------------


def join(
    session: Session, request: JoinRequest, *, now: dt.datetime, settings: ClinicSettings
) -> WaitlistEntry:
    """Put the patient on the location's waitlist for the service, or to start a course (a
    template offered there: its first session is offered only where the whole course's plan
    fits from it); InvalidInput naming the field for a bad date range or unknown times, or
    `sms_consent` without consent to texts (offers come by SMS only),
    NotFound naming `location`, `service` or `course`. Joining again for the same service (or
    course) and location updates the dates and times (the place in the queue is kept)."""
    from scheduler.services import courses  # (courses -> booking -> notifications -> here)

    if request.course and request.service:
        raise InvalidInput(
            "Give a service or a course, not both.", {"course": "give a service or a course"}
        )
    if not request.service and not request.course:
        raise InvalidInput("Choose a service.", {"service": "required"})
    location = booking.get_location(session, request.location)
    course_slug: str | None = None
    if request.course:
        template = courses.get_template(session, location, request.course)
        service, course_slug = template.service, template.slug
    else:
        service = booking.get_service(session, location, str(request.service))
    tz = ZoneInfo(location.timezone)
    today = now.astimezone(tz).date()
    fields: dict[str, str] = {}
    if request.times not in {t.value for t in WaitlistTimes}:
        fields["times"] = "morning, afternoon or any"
    if not request.patient.sms_consent:
        # Offers come by text message only: without consent no offer could ever reach them.
        fields["sms_consent"] = "required"
    last = today + dt.timedelta(days=service.horizon_days)
    if request.latest < request.earliest:
        fields["latest"] = "before earliest"
    elif request.latest < today:
        fields["latest"] = "in the past"
    elif request.earliest > last:
        fields["earliest"] = f"at most {service.horizon_days} days ahead"
    elif request.latest > last:
        # Refused rather than shortened: the patient would wait for dates never offered.
        fields["latest"] = f"at most {last.isoformat()}, the last day bookable"
    escort: Escort | None = None
    try:
        escort = validate_escort(
            request.escort, required=request.require_escort and service.escort_required
        )
    except InvalidInput as exc:
        fields.update(exc.fields)
    details = request.patient
    try:
        details = validate_details(
            request.patient,
            require_email=False,
            today=today,
            min_age_years=settings.patient_min_age_years,
            birth_date_required=service.requires_clearance,
        )
    except InvalidInput as exc:
        fields.update(exc.fields)
    if fields:
        raise InvalidInput("Some details need correcting.", fields)
    # Joining without an e-mail keeps the one a known patient gave before (a booking's latest
    # e-mail wins in find_or_create, an empty one included).
    emails: dict[int, str] = {
        row.id: row.email
        for row in session.execute(
            select(Patient.id, Patient.email).where(Patient.phone == details.phone)
        )
    }
    patient = patients.find_or_create(session, details, now)
    if not details.email and emails.get(patient.id):
        patient.email = emails[patient.id]
    earliest, latest = max(request.earliest, today), request.latest
    entry = session.scalars(
        select(WaitlistEntry).where(
            WaitlistEntry.patient_id == patient.id,
            WaitlistEntry.location_id == location.id,
            WaitlistEntry.service_id == service.id,
            WaitlistEntry.course_slug.is_(None)
            if course_slug is None
            else WaitlistEntry.course_slug == course_slug,
            WaitlistEntry.status == WaitlistStatus.ACTIVE,
        )
    ).first()
    if entry is None:
        entry = WaitlistEntry(
            location_id=location.id,
            service_id=service.id,
            course_slug=course_slug,
            patient_id=patient.id,
            status=WaitlistStatus.ACTIVE.value,
            manage_token=secrets.token_urlsafe(32),
            source=request.source,
            created_at=now,
        )
        session.add(entry)
    entry.earliest, entry.latest, entry.times = earliest, latest, request.times
    if escort is not None or not service.escort_required:
        # Joining again without an escort keeps the one given before.
        entry.escort_name = escort.name if escort else None
        entry.escort_phone = escort.phone if escort else None
    entry.updated_at = now
    entry.location, entry.service, entry.patient = location, service, patient
    session.flush()
    return entry


def get_entry(session: Session, token: str) -> WaitlistEntry:
    """The entry with this manage token, or NotFound."""
    entry = (
        session.scalars(select(WaitlistEntry).where(WaitlistEntry.manage_token == token)).first()
        if 0 < len(token) <= 64
        else None
    )
    if entry is None:
        raise NotFound("No such waitlist entry.")
    return entry


def leave(session: Session, token: str, *, now: dt.datetime) -> WaitlistEntry:
    """The patient leaves the list: the entry becomes `left` and its live offers are withdrawn.
    Leaving twice is fine; NotFound for an unknown token."""
    entry = get_entry(session, token)
    if entry.status == WaitlistStatus.ACTIVE:
        entry.status = WaitlistStatus.LEFT.value
        entry.updated_at = now
        _close_live(session, WaitlistOffer.entry_id == entry.id, OfferStatus.SKIPPED, now, "left")
    session.flush()
    return entry


def withdraw_offers_to(session: Session, phone: str, *, now: dt.datetime) -> int:
    """`phone` opted out of texts (STOP): the live offers to it are withdrawn, texted or not.
    Their links say so, and a freed slot's next batch no longer counts them as out."""
    return _close_live(
        session, WaitlistOffer.to_phone == phone, OfferStatus.SKIPPED, now, OPTED_OUT
    )


def _close_live(
    session: Session, where: Any, status: OfferStatus, now: dt.datetime, reason: str
) -> int:
    result = session.execute(
        update(WaitlistOffer)
        .where(where, WaitlistOffer.status.in_(LIVE))
        .values(status=status.value, reason=reason, closed_at=now, claim_token=None)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


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
    query = (
        select(WaitlistEntry)
        .options(joinedload(WaitlistEntry.patient), joinedload(WaitlistEntry.service))
        .where(WaitlistEntry.location_id == location.id)
        .order_by(WaitlistEntry.created_at, WaitlistEntry.id)
    )
    if status is not None:
        query = query.where(WaitlistEntry.status == status.value)
    if today is not None:
        query = query.where(WaitlistEntry.latest >= today)
    return list(session.scalars(query))


def offers_for_entries(session: Session, entry_ids: list[int]) -> dict[int, list[WaitlistOffer]]:
    """Each entry's offers, newest first (for the staff page)."""
    found: dict[int, list[WaitlistOffer]] = {entry_id: [] for entry_id in entry_ids}
    if not entry_ids:
        return found
    rows = session.scalars(
        select(WaitlistOffer)
        .where(WaitlistOffer.entry_id.in_(entry_ids))
        .order_by(WaitlistOffer.created_at.desc(), WaitlistOffer.id.desc())
    )
    for offer in rows:
        found[offer.entry_id].append(offer)
    return found


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
    if entry.status != WaitlistStatus.ACTIVE:
        raise Conflict("This patient is no longer waiting.", {"entry": f"is {entry.status}"})
    if not entry.patient.sms_consent or reminders.is_opted_out(session, entry.patient.phone):
        raise Conflict(
            "This patient does not take text messages: offers go by text only.",
            {"entry": "no SMS consent or opted out"},
        )
    if start.tzinfo is None:
        raise InvalidInput("The start needs a UTC offset.", {"start": "needs a UTC offset"})
    start = start.astimezone(UTC)
    location, service = entry.location, entry.service
    slot = availability.slot_at(session, location, service, start, now)
    if slot is None or slot.free < 1:
        raise SlotUnavailable(
            "That time is not free for this service.", {"start": "not a free start"}
        )
    try:
        patients.check_visit(session, entry.patient_id, location, service, start)
    except NotCleared as exc:
        # Worded for staff (check_visit speaks to the patient booking online).
        raise NotCleared(
            f"This patient has no clearance for {service.name.lower()}; a prescriber records "
            "one on their record.",
            exc.fields,
        ) from exc
    if entry.course_slug is not None:
        _course_plan(session, location, entry.course_slug, start, now, settings)  # or NoPlan
    if booking.patient_overlaps(session, entry.patient_id, slot.start, slot.end):
        raise Conflict("The patient has another visit then.", {"start": "patient busy"})
    if reminders.is_opted_out(session, entry.patient.phone):
        raise Conflict("This patient has opted out of texts.", {"entry": "opted out of SMS"})
    offer_id = _insert_offer(session, entry, slot, None, now, staff_id=staff.id)
    if offer_id is None:
        raise Conflict(
            "This time was already offered to this patient.", {"start": "already offered"}
        )
    offer = session.get(WaitlistOffer, offer_id)
    assert offer is not None
    return offer


# --- the offer link -------------------------------------------------------------------------------


def offer_url(settings: ClinicSettings, token: str) -> str:
    """The link texted with an offer (the claim page)."""
    return f"{settings.public_base_url}{OFFER_PATH}{token}"


def _find_offer(session: Session, token: str, *, lock: bool = False) -> WaitlistOffer:
    query = select(WaitlistOffer).where(WaitlistOffer.token == token)
    if lock:
        query = query.with_for_update()
    offer = session.scalars(query).first() if 0 < len(token) <= 64 else None
    # An offer not texted yet has no link out there: it is not shown.
    if offer is None or offer.status == OfferStatus.PENDING:
        raise NotFound("No such offer.")
    return offer


def latest_offer_text(
    session: Session, phone: str, *, since: dt.datetime, now: dt.datetime
) -> WaitlistOffer | None:
    """The latest offer texted to `phone` in (since, now] (an SMS reply may be answering it)."""
    return session.scalars(
        select(WaitlistOffer)
        .where(
            WaitlistOffer.to_phone == phone,
            WaitlistOffer.sent_at.is_not(None),
            WaitlistOffer.sent_at <= now,
            WaitlistOffer.sent_at > since,
        )
        .order_by(WaitlistOffer.sent_at.desc(), WaitlistOffer.id.desc())
        .limit(1)
    ).first()


def render_offer_reply(
    session: Session, offer: WaitlistOffer, *, now: dt.datetime, settings: ClinicSettings
) -> str:
    """The answer to a C or YES sent back to an offer text: a reply books nothing; the link
    does (given again while the offer stands), else the offer is said to be over."""
    view = get_offer(session, offer.token, now=now)
    tz = ZoneInfo(view.location.timezone)
    shared = reminders.phone_is_shared(session, view.entry.patient_id)
    return reminders.render_text(
        "waitlist_offer_reply.txt",
        clinic=settings.clinic_name,
        who=reminders.first_name(view.entry.patient.name) if shared else "",
        when=reminders.local_when(view.start, tz),
        location=view.location.name,
        state="claimable"
        if view.claimable
        else "claimed"
        if view.claimed
        else "booked"
        if view.already_booked
        else "taken"
        if view.taken
        else "expired",
        until=reminders.local_when(view.offer.expires_at, tz) if view.offer.expires_at else "",
        url=offer_url(settings, offer.token),
        phone=view.location.phone,
    )


def _slot_free(
    session: Session, location: Location, service: Service, start: dt.datetime, now: dt.datetime
) -> bool:
    slot = availability.slot_at(session, location, service, start, now)
    return slot is not None and slot.free > 0


def get_offer(
    session: Session, token: str, *, now: dt.datetime, settings: ClinicSettings | None = None
) -> OfferView:
    """The offer with this token and its state, or NotFound (also before it was texted); with
    `settings`, a course offer's view carries the course's plan from the offered start."""
    offer = _find_offer(session, token)
    entry = offer.entry
    claimed = offer.status == OfferStatus.CLAIMED
    already_booked = not claimed and entry.status == WaitlistStatus.BOOKED
    expired = not claimed and (
        offer.status == OfferStatus.EXPIRED
        or (offer.expires_at is not None and offer.expires_at <= now)
        or entry.status == WaitlistStatus.LEFT
        or offer.status in (OfferStatus.SKIPPED, OfferStatus.FAILED)
    )
    withdrawn = expired and offer.status == OfferStatus.SKIPPED and offer.reason == OPTED_OUT
    taken = not claimed and (
        offer.status == OfferStatus.TAKEN
        or (
            not expired
            and not _slot_free(session, entry.location, entry.service, offer.slot_start, now)
        )
    )
    course: dict[str, Any] = {}
    if entry.course_slug is not None and settings is not None and not claimed:
        course = _course_view(session, entry, offer, now, settings)
        # No plan fits from this start any more: claiming would be refused as taken.
        taken = taken or (not expired and not already_booked and not course)
    return OfferView(
        offer=offer,
        entry=entry,
        location=entry.location,
        service=entry.service,
        start=offer.slot_start,
        end=offer.slot_end,
        expired=expired,
        taken=taken,
        claimed=claimed,
        appointment_id=offer.appointment_id,
        already_booked=already_booked,
        withdrawn=withdrawn,
        **course,
    )


def _course_view(
    session: Session,
    entry: WaitlistEntry,
    offer: WaitlistOffer,
    now: dt.datetime,
    settings: ClinicSettings,
) -> dict[str, Any]:
    """The course an offer would book from its start: its name and plan (no plan: empty)."""
    from scheduler.services import courses

    try:
        found = courses.plan(
            session,
            entry.location.slug,
            str(entry.course_slug),
            offer.slot_start,
            now=now,
            settings=settings,
        )
    except (courses.NoPlan, DomainError):
        return {}
    return {
        "course_name": found.template.name,
        "plan": tuple(PlannedVisit(p.start, p.end, p.moved) for p in found.sessions),
    }


def claim(
    session: Session, token: str, *, now: dt.datetime, settings: ClinicSettings
) -> Appointment:
    """Book the offered slot for the entry's patient through `booking.book`.

    OfferExpired (409 `expired`) after the offer's time; OfferTaken (409 `taken`) when the slot
    is gone (the entry stays active). On success the entry is booked and the other live offers
    of that slot are marked taken when it has no room left. Claiming again answers the visit.
    """
    offer = _find_offer(session, token, lock=True)
    entry = offer.entry
    if offer.status == OfferStatus.CLAIMED and offer.appointment_id is not None:
        appointment = session.get(Appointment, offer.appointment_id)
        if appointment is not None:
            return appointment
    if entry.status == WaitlistStatus.BOOKED:
        raise AlreadyBooked(
            "You have already booked from this waitlist, so this offer is withdrawn.",
            {"offer": "already booked from this waitlist"},
        )
    if offer.status == OfferStatus.TAKEN:
        raise OfferTaken("Sorry, this time has just been taken. You stay on the waitlist.")
    if offer.status == OfferStatus.SKIPPED and offer.reason == OPTED_OUT:
        raise OfferExpired(
            "This offer is no longer open: texts to this number were stopped (STOP), so it was "
            "withdrawn."
        )
    if (
        offer.status not in (OfferStatus.SENT, OfferStatus.SENDING)
        or (offer.expires_at is not None and offer.expires_at <= now)
        or entry.status != WaitlistStatus.ACTIVE
    ):
        raise OfferExpired("This offer has expired. You stay on the waitlist for the next one.")
    location, service, patient = entry.location, entry.service, entry.patient
    details = PatientDetails(
        patient.name, patient.phone, patient.email, patient.sms_consent, patient.date_of_birth
    )
    try:
        if entry.course_slug is not None:
            appointment = _claim_course(session, entry, offer, details, now, settings)
        else:
            request = booking.BookingRequest(
                location=location.slug,
                service=service.slug,
                start=offer.slot_start,
                patient=details,
                source="waitlist",
                require_email=bool(patient.email),
                escort=_entry_escort(entry),
            )
            appointment = booking.book(session, request, now=now, settings=settings)
    except SlotUnavailable as exc:
        raise OfferTaken("Sorry, this time has just been taken. You stay on the waitlist.") from exc
    offer.status, offer.appointment_id, offer.closed_at = (
        OfferStatus.CLAIMED.value,
        appointment.id,
        now,
    )
    entry.status, entry.appointment_id, entry.updated_at = (
        WaitlistStatus.BOOKED.value,
        appointment.id,
        now,
    )
    session.flush()
    _close_live(
        session,
        and_(WaitlistOffer.entry_id == entry.id, WaitlistOffer.id != offer.id),
        OfferStatus.SKIPPED,
        now,
        "booked another offer",
    )
    if not _slot_free(session, location, service, offer.slot_start, now):
        _close_live(
            session,
            and_(
                WaitlistOffer.location_id == location.id,
                WaitlistOffer.slot_start == offer.slot_start,
                WaitlistOffer.id != offer.id,
            ),
            OfferStatus.TAKEN,
            now,
            "claimed by another patient",
        )
    session.flush()
    return appointment


def _entry_escort(entry: WaitlistEntry) -> Escort | None:
    if not entry.escort_phone:
        return None
    return Escort(entry.escort_name or "", entry.escort_phone)


def _course_plan(
    session: Session,
    location: Location,
    course_slug: str,
    start: dt.datetime,
    now: dt.datetime,
    settings: ClinicSettings,
) -> list[dt.datetime]:
    """The starts of a course that begins at `start` (courses.plan: the one planner); NoPlan
    when none keeps the course's rules from there."""
    from scheduler.services import courses

    plan = courses.plan(session, location.slug, course_slug, start, now=now, settings=settings)
    return [planned.start for planned in plan.sessions]


def _claim_course(
    session: Session,
    entry: WaitlistEntry,
    offer: WaitlistOffer,
    details: PatientDetails,
    now: dt.datetime,
    settings: ClinicSettings,
) -> Appointment:
    """Book the whole course from the offered start (planned again now); its first session.
    A plan that no longer fits is the slot taken."""
    from scheduler.services import courses

    try:
        starts = _course_plan(
            session, entry.location, str(entry.course_slug), offer.slot_start, now, settings
        )
    except courses.NoPlan as exc:
        raise SlotUnavailable("The course no longer fits from this time.") from exc
    course = courses.book_course(
        session,
        courses.CourseRequest(
            location=entry.location.slug,
            course=str(entry.course_slug),
            starts=starts,
            patient=details,
            source="waitlist",
            require_email=bool(details.email),
            escort=_entry_escort(entry),
        ),
        now=now,
        settings=settings,
    )
    return courses.sessions(course)[0]


# --- triggers -------------------------------------------------------------------------------------


def queue_freed(
    session: Session,
    location_id: int,
    start: dt.datetime,
    end: dt.datetime,
    *,
    reason: str,
    now: dt.datetime,
) -> WaitlistFreed | None:
    """Record that [start, end) at the location may have room now (inside the caller's
    transaction; the worker looks at it after commit). None when nothing is to be looked at:
    the time has passed, or no one waits at the location."""
    if end <= now or end <= start:
        return None
    waiting = session.scalar(
        select(
            exists().where(
                WaitlistEntry.location_id == location_id,
                WaitlistEntry.status == WaitlistStatus.ACTIVE,
            )
        )
    )
    if not waiting:
        return None
    freed = WaitlistFreed(
        location_id=location_id,
        start_at=start,
        end_at=end,
        reason=reason,
        status=FreedStatus.PENDING.value,
        next_attempt_at=now,
        attempts=0,
        rounds=0,
        created_at=now,
    )
    session.add(freed)
    session.flush()
    return freed


def pattern_added(
    session: Session, location: Location, pattern: ShiftPattern, *, now: dt.datetime
) -> int:
    """A new (or changed) weekly shift adds staff capacity on each day it falls: queue a look at
    each of its occurrences from now until the last date anyone waits for at the location, as
    a one-off shift does (reason `shift`). Returns how many intervals were queued."""
    from scheduler.services import staffing  # (staffing calls this)

    last = session.scalar(
        select(func.max(WaitlistEntry.latest)).where(
            WaitlistEntry.location_id == location.id,
            WaitlistEntry.status == WaitlistStatus.ACTIVE,
        )
    )
    if last is None:
        return 0
    tz = ZoneInfo(location.timezone)
    day = now.astimezone(tz).date()
    if pattern.valid_from is not None:
        day = max(day, pattern.valid_from)
    if pattern.valid_until is not None:
        last = min(last, pattern.valid_until)
    queued = 0
    while day <= last:
        hit = staffing.occurrence(pattern, day, tz)
        if hit is not None and queue_freed(
            session, location.id, max(hit[0], now), hit[1], reason=FreedReason.SHIFT, now=now
        ):
            queued += 1
        day += dt.timedelta(days=1)
    return queued


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
    if change == "rescheduled" and previous is not None:
        start, end = previous
        reason = FreedReason.MOVED
    elif change == "cancelled":
        start, end, reason = (
            appointment.occupied_start,
            appointment.occupied_end,
            FreedReason.CANCELLED,
        )
    elif change == "status" and appointment.status == AppointmentStatus.NO_SHOW:
        start, end, reason = (
            appointment.occupied_start,
            appointment.occupied_end,
            FreedReason.NO_SHOW,
        )
    else:
        return
    queue_freed(session, appointment.location_id, start, end, reason=reason.value, now=now)


# --- worker: freed slots into offers --------------------------------------------------------------


def _claim(session: Session, table: Any, due: Any, values: dict[str, Any], limit: int) -> list[int]:
    """Mark up to `limit` rows matching `due` with `values`, in id order (the reminder
    worker's claim: SKIP LOCKED on PostgreSQL, a conditional UPDATE on SQLite)."""
    return sorted(reminders.claim_rows(session, table, due, values, limit))


def _due(table: Any, now: dt.datetime, pending: str, working: str) -> Any:
    return or_(
        and_(table.c.status == pending, table.c.next_attempt_at <= now),
        and_(table.c.status == working, table.c.lease_until < now),
    )


def process_freed(
    session: Session,
    *,
    now: dt.datetime,
    settings: ClinicSettings,
    batch: int,
    token: str,
    lease_until: dt.datetime,
    claimed: list[int] | None = None,
) -> int:
    """Claim up to `batch` due freed rows and insert the offers they owe (pending, texted by
    the send step); returns how many offers were inserted (the rows claimed are appended to
    `claimed`: fewer than `batch` means none is left due). The caller commits.

    A row with offers out (or just made) is looked at again when they expire: the slot, if
    still free, goes to the next entries in join order. A row with nothing left to offer and
    no live offers is done."""
    due = _due(FREED, now, FreedStatus.PENDING.value, FreedStatus.WORKING.value)
    values = {
        "status": FreedStatus.WORKING.value,
        "claim_token": token,
        "lease_until": lease_until,
        "attempts": FREED.c.attempts + 1,
    }
    ids = _claim(session, FREED, due, values, batch)
    if claimed is not None:
        claimed.extend(ids)
    made = 0
    wait = dt.timedelta(minutes=settings.waitlist_offer_minutes)
    for freed in session.scalars(
        select(WaitlistFreed).where(WaitlistFreed.id.in_(ids)).order_by(WaitlistFreed.id)
    ):
        new, live = offer_freed(session, freed, now=now, settings=settings)
        made += new
        if live and freed.end_at > now:
            freed.status = FreedStatus.PENDING.value
            freed.next_attempt_at = now + wait
            freed.rounds += 1 if new else 0
        else:
            freed.status, freed.done_at = FreedStatus.DONE.value, now
        freed.claim_token, freed.lease_until = None, None
    session.flush()
    return made


def offer_freed(
    session: Session, freed: WaitlistFreed, *, now: dt.datetime, settings: ClinicSettings
) -> tuple[int, int]:
    """Insert the offers one freed interval owes now: (offers inserted, offers live after)."""
    live = session.scalar(
        select(func.count())
        .select_from(WaitlistOffer)
        .where(
            WaitlistOffer.freed_id == freed.id,
            WaitlistOffer.status.in_(LIVE),
            or_(WaitlistOffer.expires_at.is_(None), WaitlistOffer.expires_at > now),
        )
    )
    need = settings.waitlist_batch - int(live or 0)
    if need <= 0:
        return 0, int(live or 0)
    location = session.get(Location, freed.location_id)
    if location is None or not location.active:
        return 0, int(live or 0)
    tz = ZoneInfo(location.timezone)
    first_day = freed.start_at.astimezone(tz).date()
    last_day = (freed.end_at - dt.timedelta(microseconds=1)).astimezone(tz).date()
    services = list(
        session.scalars(
            select(Service)
            .join(service_locations, service_locations.c.service_id == Service.id)
            .where(
                service_locations.c.location_id == location.id,
                Service.active.is_(True),
                Service.id.in_(
                    select(WaitlistEntry.service_id).where(
                        WaitlistEntry.location_id == location.id,
                        WaitlistEntry.status == WaitlistStatus.ACTIVE,
                        WaitlistEntry.earliest <= last_day,
                        WaitlistEntry.latest >= first_day,
                    )
                ),
            )
            .order_by(Service.id)
        )
    )
    starts = {
        service.id: freed_slots(session, location, service, freed, now) for service in services
    }
    made, tried = 0, set[int]()
    course_fits = _CourseFit(session, location, now, settings)
    # A concurrent worker may have offered one of these (entry, slot) pairs first: its insert
    # wins, ours does nothing, and the next entries in join order are looked at instead.
    for _ in range(MAX_ROUNDS):
        if made >= need:
            break
        found: list[tuple[WaitlistEntry, availability.Slot]] = []
        for service in services:
            if starts[service.id]:
                found += _fitting_entries(
                    session,
                    location,
                    service,
                    starts[service.id],
                    freed,
                    now,
                    need - made,
                    tried,
                    course_fits,
                )
        if not found:
            break
        found.sort(key=lambda pair: (pair[0].created_at, pair[0].id))
        for entry, slot in found[: need - made]:
            tried.add(entry.id)
            if _insert_offer(session, entry, slot, freed.id, now) is not None:
                made += 1
    return made, int(live or 0) + made


def freed_slots(
    session: Session,
    location: Location,
    service: Service,
    freed: WaitlistFreed,
    now: dt.datetime,
) -> list[availability.Slot]:
    """The starts the availability engine offers for `service` whose occupied time meets the
    freed interval (the rest of the day had its chance already)."""
    tz = ZoneInfo(location.timezone)
    first_day = freed.start_at.astimezone(tz).date()
    last_day = (freed.end_at - dt.timedelta(microseconds=1)).astimezone(tz).date()
    days = (last_day - first_day).days + 1
    prep = dt.timedelta(minutes=service.prep_minutes)
    recovery = dt.timedelta(minutes=service.recovery_minutes)
    return [
        slot
        for slot in availability.location_slots(session, location, service, first_day, days, now)
        if availability.overlaps(
            slot.start - prep, slot.end + recovery, freed.start_at, freed.end_at
        )
    ]


def _patient_may(
    session: Session,
    entry: WaitlistEntry,
    location: Location,
    service: Service,
    slot: availability.Slot,
) -> bool:
    """Clearance and spacing (`patients.check_visit`) and no visit of their own then."""
    try:
        patients.check_visit(session, entry.patient_id, location, service, slot.start)
    except (NotCleared, TooSoon):
        return False
    return not booking.patient_overlaps(session, entry.patient_id, slot.start, slot.end)


class _CourseFit:
    """Whether a course's plan fits from a start (asked once per course and start)."""

    def __init__(
        self, session: Session, location: Location, now: dt.datetime, settings: ClinicSettings
    ) -> None:
        self.session, self.location, self.now, self.settings = session, location, now, settings
        self.known: dict[tuple[str, dt.datetime], bool] = {}

    def __call__(self, course_slug: str, start: dt.datetime) -> bool:
        key = (course_slug, start)
        if key not in self.known:
            try:
                _course_plan(
                    self.session, self.location, course_slug, start, self.now, self.settings
                )
                self.known[key] = True
            except DomainError:  # no plan from there, or the course is no longer offered
                self.known[key] = False
        return self.known[key]


def _fitting_entries(
    session: Session,
    location: Location,
    service: Service,
    slots: Sequence[availability.Slot],
    freed: WaitlistFreed,
    now: dt.datetime,
    need: int,
    tried: set[int],
    course_fits: _CourseFit,
) -> list[tuple[WaitlistEntry, availability.Slot]]:
    """Up to `need` entries for `service`, in join order, each with the earliest of `slots`
    that fits their dates, times and rules. SQL narrows by location, service, status, dates,
    times, SMS consent and opt-out, offers already made and offers still out; the rules are
    checked per entry until the batch is full."""
    tz = ZoneInfo(location.timezone)
    days = [slot.start.astimezone(tz).date() for slot in slots]
    times = {WaitlistTimes.ANY.value} | {_times_for(slot.start, tz) for slot in slots}
    starts = [slot.start for slot in slots]
    offered = exists().where(
        WaitlistOffer.entry_id == WaitlistEntry.id,
        or_(WaitlistOffer.freed_id == freed.id, WaitlistOffer.slot_start.in_(starts)),
    )
    out_now = exists().where(
        WaitlistOffer.entry_id == WaitlistEntry.id,
        WaitlistOffer.status.in_(LIVE),
        or_(WaitlistOffer.expires_at.is_(None), WaitlistOffer.expires_at > now),
    )
    opted_out = exists().where(SmsOptOut.phone == Patient.phone, SmsOptOut.opted_out.is_(True))
    query = (
        select(WaitlistEntry)
        .join(Patient, Patient.id == WaitlistEntry.patient_id)
        .options(joinedload(WaitlistEntry.patient))
        .where(
            WaitlistEntry.location_id == location.id,
            WaitlistEntry.service_id == service.id,
            WaitlistEntry.status == WaitlistStatus.ACTIVE,
            WaitlistEntry.earliest <= max(days),
            WaitlistEntry.latest >= min(days),
            WaitlistEntry.times.in_(sorted(times)),
            Patient.sms_consent.is_(True),
            ~offered,
            ~out_now,
            ~opted_out,
        )
        .order_by(WaitlistEntry.created_at, WaitlistEntry.id)
    )
    if tried:
        query = query.where(WaitlistEntry.id.not_in(sorted(tried)))
    found: list[tuple[WaitlistEntry, availability.Slot]] = []
    after: tuple[dt.datetime, int] | None = None
    # Most entries the SQL returns fit: the first page asks for a few more than the batch.
    chunk = min(ENTRY_CHUNK, 4 * need)
    while len(found) < need:
        page = query.limit(chunk)
        if after is not None:
            page = page.where(
                or_(
                    WaitlistEntry.created_at > after[0],
                    and_(WaitlistEntry.created_at == after[0], WaitlistEntry.id > after[1]),
                )
            )
        entries = list(session.scalars(page).unique())
        for entry in entries:
            for slot, day in zip(slots, days, strict=True):
                if (
                    entry.earliest <= day <= entry.latest
                    and fits_times(entry.times, slot.start, tz)
                    and (entry.course_slug is None or course_fits(entry.course_slug, slot.start))
                    and _patient_may(session, entry, location, service, slot)
                ):
                    found.append((entry, slot))
                    break
            if len(found) >= need:
                break
        if len(entries) < chunk:
            break
        after = (entries[-1].created_at, entries[-1].id)
        chunk = ENTRY_CHUNK
    return found


@functools.cache
def _insert_offer_query(dialect: str) -> Any:
    if dialect == "postgresql":
        return (
            postgresql.insert(OFFERS)
            .on_conflict_do_nothing(index_elements=["entry_id", "slot_start"])
            .returning(OFFERS.c.id)
        )
    return (
        sqlite.insert(OFFERS)
        .on_conflict_do_nothing(index_elements=["entry_id", "slot_start"])
        .returning(OFFERS.c.id)
    )


def _insert_offer(
    session: Session,
    entry: WaitlistEntry,
    slot: availability.Slot,
    freed_id: int | None,
    now: dt.datetime,
    *,
    staff_id: int | None = None,
) -> int | None:
    """Insert a pending offer of `slot` to `entry`; None when (entry, slot) was offered before
    (ON CONFLICT DO NOTHING: concurrent workers never both offer it)."""
    values = {
        "entry_id": entry.id,
        "location_id": entry.location_id,
        "slot_start": slot.start,
        "slot_end": slot.end,
        "resource_id": None,
        "token": secrets.token_urlsafe(24),
        "status": OfferStatus.PENDING.value,
        "to_phone": entry.patient.phone,
        "next_attempt_at": now,
        "attempts": 0,
        "error_code": "",
        "reason": "",
        "freed_id": freed_id,
        "offered_by_id": staff_id,
        "created_at": now,
    }
    session.flush()
    new_id = session.scalar(_insert_offer_query(session.get_bind().dialect.name), values)
    return None if new_id is None else int(new_id)


# --- worker: the texts ----------------------------------------------------------------------------


def claim_offers(
    session: Session, now: dt.datetime, *, token: str, lease_until: dt.datetime, limit: int
) -> list[OutgoingOffer]:
    """Mark up to `limit` due offer texts as ours (`sending`) and load them; the caller
    commits. Rows of a worker whose lease ran out are taken over."""
    due = _due(OFFERS, now, OfferStatus.PENDING.value, OfferStatus.SENDING.value)
    values = {
        "status": OfferStatus.SENDING.value,
        "claim_token": token,
        "lease_until": lease_until,
        "attempts": OFFERS.c.attempts + 1,
    }
    ids = _claim(session, OFFERS, due, values, limit)
    if not ids:
        return []
    shared = reminders.shared_phone()
    rows = session.execute(
        select(
            WaitlistOffer.id,
            WaitlistOffer.token,
            WaitlistOffer.attempts,
            func.coalesce(func.nullif(WaitlistOffer.to_phone, ""), Patient.phone),
            Patient.name,
            shared.label("shared"),
            Location.timezone,
            Location.name,
            Service.public_title,
            WaitlistOffer.slot_start,
            CourseTemplate.sessions,
        )
        .join(WaitlistEntry, WaitlistEntry.id == WaitlistOffer.entry_id)
        .join(Patient, Patient.id == WaitlistEntry.patient_id)
        .join(Location, Location.id == WaitlistEntry.location_id)
        .join(Service, Service.id == WaitlistEntry.service_id)
        .outerjoin(CourseTemplate, CourseTemplate.slug == WaitlistEntry.course_slug)
        .where(WaitlistOffer.id.in_(ids), WaitlistOffer.claim_token == token)
        .order_by(WaitlistOffer.id)
    )
    return [
        OutgoingOffer(
            id=r[0],
            token=token,
            offer_token=r[1],
            attempts=r[2],
            phone=r[3],
            patient_name=r[4],
            shared_phone=bool(r[5]),
            timezone=r[6],
            location=r[7],
            title=r[8] or "",
            start=r[9],
            sessions=r[10] or 1,
        )
        for r in rows
    ]


def _finish(session: Session, item: OutgoingOffer, **values: object) -> bool:
    """Record the outcome of our claim (only while the row is still ours)."""
    result = session.execute(
        update(OFFERS)
        .where(OFFERS.c.id == item.id, OFFERS.c.claim_token == item.token)
        .values(**values)
    )
    return bool(getattr(result, "rowcount", 0))


def prepare_offer(session: Session, item: OutgoingOffer, now: dt.datetime) -> str | None:
    """Decide one claimed text before sending: None to send it now; else the outcome recorded
    (`skipped`: no SMS consent or opted out, the slot or the entry went; `deferred`: quiet
    hours; `lost`: another worker has the row)."""
    offer = session.get(WaitlistOffer, item.id, populate_existing=True)
    if offer is None or offer.claim_token != item.token:
        return "lost"
    entry = offer.entry
    reason = ""
    if entry.status != WaitlistStatus.ACTIVE:
        reason = "no longer waiting"
    elif not entry.patient.sms_consent:
        reason = "no SMS consent"
    elif reminders.is_opted_out(session, item.phone):
        reason = OPTED_OUT
    elif not _slot_free(session, entry.location, entry.service, offer.slot_start, now):
        reason = "slot no longer free"
    if reason:
        ok = _finish(
            session,
            item,
            status=OfferStatus.SKIPPED.value,
            reason=reason,
            closed_at=now,
            claim_token=None,
            lease_until=None,
        )
        return "skipped" if ok else "lost"
    tz = ZoneInfo(item.timezone)
    if reminders.in_quiet_hours(now, tz):
        later = reminders.outside_quiet_hours(now, tz, offer.slot_start)
        notice = dt.timedelta(minutes=entry.service.min_notice_minutes)
        if later <= now or later + notice > offer.slot_start:
            ok = _finish(
                session,
                item,
                status=OfferStatus.SKIPPED.value,
                reason="quiet hours until the visit",
                closed_at=now,
                claim_token=None,
                lease_until=None,
            )
            return "skipped" if ok else "lost"
        ok = _finish(
            session,
            item,
            status=OfferStatus.PENDING.value,
            next_attempt_at=later,
            attempts=OFFERS.c.attempts - 1,
            claim_token=None,
            lease_until=None,
        )
        return "deferred" if ok else "lost"
    return None


def render_offer(item: OutgoingOffer, settings: ClinicSettings) -> str:
    """The offer's text: no treatment name; the first name when the number is shared."""
    return reminders.render_text(
        "waitlist_offer.txt",
        clinic=settings.clinic_name,
        who=reminders.first_name(item.patient_name) if item.shared_phone else "",
        title=item.title,
        location=item.location,
        when=reminders.local_when(item.start, ZoneInfo(item.timezone)),
        minutes=settings.waitlist_offer_minutes,
        url=offer_url(settings, item.offer_token),
        sessions=item.sessions,
    )


def deliver_offer(item: OutgoingOffer, sender: SmsSender, settings: ClinicSettings) -> SendResult:
    """Hand one offer text to the provider (no database); raises SmsError."""
    return sender.send(item.phone, render_offer(item, settings))


def record_offer_sent(
    session: Session,
    item: OutgoingOffer,
    result: SendResult,
    now: dt.datetime,
    settings: ClinicSettings,
) -> bool:
    """The text went: `sent`, claimable until now + the offer time. False when the row was
    no longer ours."""
    return _finish(
        session,
        item,
        status=case(
            (OFFERS.c.status == OfferStatus.SENDING.value, OfferStatus.SENT.value),
            else_=OFFERS.c.status,
        ),
        provider_sid=result.sid,
        sent_at=now,
        expires_at=now + dt.timedelta(minutes=settings.waitlist_offer_minutes),
        error_code="",
        claim_token=None,
        lease_until=None,
    )


def record_offer_error(
    session: Session, item: OutgoingOffer, exc: SmsError, now: dt.datetime
) -> str:
    """A failed send: `failed` for good, or pending again with backoff; returns the outcome."""
    if exc.permanent or item.attempts >= MAX_ATTEMPTS:
        ok = _finish(
            session,
            item,
            status=OfferStatus.FAILED.value,
            error_code=exc.code[:16],
            reason="rejected" if exc.permanent else f"gave up after {item.attempts} attempts",
            closed_at=now,
            claim_token=None,
            lease_until=None,
        )
        return "failed" if ok else "lost"
    ok = _finish(
        session,
        item,
        status=OfferStatus.PENDING.value,
        error_code=exc.code[:16],
        next_attempt_at=now + reminders.backoff(item.attempts),
        claim_token=None,
        lease_until=None,
    )
    return "retrying" if ok else "lost"


def release_offers(session: Session, token: str) -> int:
    """Hand back texts claimed under `token` and not sent (the worker is stopping)."""
    result = session.execute(
        update(OFFERS)
        .where(OFFERS.c.claim_token == token, OFFERS.c.status == OfferStatus.SENDING.value)
        .values(
            status=OfferStatus.PENDING.value,
            attempts=OFFERS.c.attempts - 1,
            claim_token=None,
            lease_until=None,
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


def expire_offers(session: Session, now: dt.datetime) -> int:
    """Mark sent offers past their time as expired; returns how many."""
    result = session.execute(
        update(OFFERS)
        .where(OFFERS.c.status == OfferStatus.SENT.value, OFFERS.c.expires_at <= now)
        .values(status=OfferStatus.EXPIRED.value, closed_at=now)
    )
    return int(getattr(result, "rowcount", 0) or 0)
