"""What the waitlist pages show: a location's waiting patients for staff (with the offers made to
each) and the free starts staff may offer one of them by hand. Read-only; the rules (who fits,
what may be offered) stay in services/waitlist.py and the availability engine."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from scheduler.models import Location, OfferStatus, WaitlistEntry, WaitlistOffer, WaitlistTimes
from scheduler.services import availability, waitlist

TIMES_LABELS = {
    WaitlistTimes.MORNING.value: "Mornings",
    WaitlistTimes.AFTERNOON.value: "Afternoons",
    WaitlistTimes.ANY.value: "Any time",
}
OFFER_LABELS = {
    OfferStatus.PENDING.value: "to be texted",
    OfferStatus.SENDING.value: "being texted",
    OfferStatus.SENT.value: "texted, waiting for an answer",
    OfferStatus.CLAIMED.value: "booked",
    OfferStatus.TAKEN.value: "taken by someone else",
    OfferStatus.EXPIRED.value: "expired",
    OfferStatus.SKIPPED.value: "not texted",
    OfferStatus.FAILED.value: "text failed",
}


@dataclass(frozen=True)
class OfferLine:
    start: dt.datetime  # UTC
    status: str  # an OfferStatus value
    label: str  # its status in words
    by_hand: bool


@dataclass(frozen=True)
class EntryRow:
    """One waiting patient, as the staff list shows them."""

    entry: WaitlistEntry
    position: int  # 1 = first in join order
    times: str  # "Mornings"
    offers: list[OfferLine]  # newest first

    @property
    def live_offer(self) -> OfferLine | None:
        """An offer still on its way or waiting for the patient's answer."""
        live = {s.value for s in (OfferStatus.PENDING, OfferStatus.SENDING, OfferStatus.SENT)}
        return next((o for o in self.offers if o.status in live), None)


def _lines(offers: list[WaitlistOffer], now: dt.datetime) -> list[OfferLine]:
    lines = []
    for offer in offers:
        status = offer.status
        if status == OfferStatus.SENT and offer.expires_at is not None and offer.expires_at <= now:
            status = OfferStatus.EXPIRED.value  # the worker marks it on its next pass
        lines.append(
            OfferLine(
                offer.slot_start,
                status,
                OFFER_LABELS.get(status, status),
                bool(offer.offered_by_id),
            )
        )
    return lines


def location_rows(session: Session, location: Location, *, now: dt.datetime) -> list[EntryRow]:
    """The location's active entries still in date, in join order, with their offers."""
    today = now.astimezone(ZoneInfo(location.timezone)).date()
    entries = waitlist.entries_for_location(session, location, today=today)
    offers = waitlist.offers_for_entries(session, [e.id for e in entries])
    return [
        EntryRow(
            entry=entry,
            position=n,
            times=TIMES_LABELS.get(entry.times, entry.times),
            offers=_lines(offers[entry.id], now),
        )
        for n, entry in enumerate(entries, start=1)
    ]


def entry_row(session: Session, entry: WaitlistEntry, *, now: dt.datetime) -> EntryRow:
    offers = waitlist.offers_for_entries(session, [entry.id])
    return EntryRow(
        entry, 0, TIMES_LABELS.get(entry.times, entry.times), _lines(offers[entry.id], now)
    )


def first_day(entry: WaitlistEntry, now: dt.datetime) -> dt.date:
    """The first day worth looking at for this entry: its earliest date, or today."""
    today = now.astimezone(ZoneInfo(entry.location.timezone)).date()
    return max(entry.earliest, today)


@dataclass(frozen=True)
class Start:
    slot: availability.Slot
    fits: bool  # inside the patient's dates and times of day
    offered: bool  # this start was offered to this patient already


def free_starts(
    session: Session, entry: WaitlistEntry, day: dt.date, *, now: dt.datetime
) -> list[Start]:
    """The starts the engine offers for the entry's service on `day` (local), each marked with
    whether it suits the patient and whether it was offered to them before. Staff may offer a
    start outside the patient's times (they may have asked on the phone); the offer itself is
    checked by `waitlist.offer_by_hand`."""
    tz = ZoneInfo(entry.location.timezone)
    slots = availability.location_slots(session, entry.location, entry.service, day, 1, now)
    done = {o.slot_start for o in waitlist.offers_for_entries(session, [entry.id])[entry.id]}
    return [
        Start(
            slot,
            entry.earliest <= day <= entry.latest
            and waitlist.fits_times(entry.times, slot.start, tz),
            slot.start in done,
        )
        for slot in slots
    ]
