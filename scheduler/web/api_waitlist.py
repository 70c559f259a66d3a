"""JSON API v1: the waitlist (join, leave, claim an offer; staff: the list, offer by hand).

Registered on the API blueprint through `web/api.py::route`. Joining and claiming are public
writes: the API's booking rate limit counts them with bookings.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from flask import Response, g, jsonify
from flask.typing import ResponseReturnValue

from scheduler.extensions import db
from scheduler.models import WaitlistEntry, WaitlistOffer, WaitlistStatus
from scheduler.services import waitlist
from scheduler.services.errors import InvalidInput, NotFound
from scheduler.web import schemas as s
from scheduler.web.api import (
    _body_fields,
    _staff_location,
    api_audit,
    appointment_out,
    parse_body,
    parse_query,
    route,
    staff_required,
)
from scheduler.web.common import now, settings


@route(
    "/waitlist",
    "POST",
    summary="Join a location's waitlist for a service (offers come by SMS)",
    body=s.WaitlistIn,
    response=s.WaitlistJoinOut,
    status=201,
    errors=(404, 422),
)
def join_waitlist() -> ResponseReturnValue:
    body = parse_body(s.WaitlistIn)
    request = waitlist.JoinRequest(
        location=body.location,
        service=body.service,
        course=body.course,
        patient=body.patient.details(body.sms_consent),
        earliest=body.earliest,
        latest=body.latest,
        times=body.times,
        source="api",
        escort=body.escort.escort() if body.escort else None,
    )
    try:
        entry = waitlist.join(db.session(), request, now=now(), settings=settings())
    except InvalidInput as exc:
        raise InvalidInput(exc.message, _body_fields(exc.fields)) from exc
    db.session.commit()
    out = s.WaitlistJoinOut(id=entry.id, manage_token=entry.manage_token)
    return jsonify(out.model_dump()), 201


@route(
    "/waitlist/<token>",
    "DELETE",
    summary="Leave the waitlist (by the entry's manage token)",
    status=204,
    errors=(404,),
)
def leave_waitlist(token: str) -> ResponseReturnValue:
    waitlist.leave(db.session(), token, now=now())
    db.session.commit()
    return Response(status=204)


@route(
    "/waitlist/offers/<token>/claim",
    "POST",
    summary="Claim a waitlist offer: books the slot (409 taken: someone was first; 409 expired)",
    response=s.AppointmentOut,
    status=201,
    errors=(404, 409, 422),
)
def claim_offer(token: str) -> ResponseReturnValue:
    appointment = waitlist.claim(db.session(), token, now=now(), settings=settings())
    db.session.commit()
    return jsonify(appointment_out(appointment)), 201


# --- staff ----------------------------------------------------------------------------------------


def _offer_out(offer: WaitlistOffer, tz: ZoneInfo) -> s.WaitlistOfferOut:
    return s.WaitlistOfferOut(
        id=offer.id,
        start=offer.slot_start.astimezone(tz).isoformat(),
        end=offer.slot_end.astimezone(tz).isoformat(),
        status=offer.status,
        by_hand=offer.offered_by_id is not None,
        sent_at=offer.sent_at.isoformat() if offer.sent_at else None,
        expires_at=offer.expires_at.isoformat() if offer.expires_at else None,
        appointment=offer.appointment_id,
    )


def _entry_out(entry: WaitlistEntry, offers: list[WaitlistOffer], tz: ZoneInfo) -> dict[str, Any]:
    return s.WaitlistEntryOut(
        id=entry.id,
        service=entry.service.slug,
        course=entry.course_slug,
        patient=s.WaitlistPatientOut(
            id=entry.patient.id, name=entry.patient.name, phone=entry.patient.phone
        ),
        earliest=entry.earliest,
        latest=entry.latest,
        times=entry.times,
        status=entry.status,
        joined_at=entry.created_at.isoformat(),
        appointment=entry.appointment_id,
        offers=[_offer_out(o, tz) for o in offers],
    ).model_dump(mode="json")


@route(
    "/locations/<location>/waitlist",
    summary="A location's waitlist in join order, with each entry's offers",
    query=s.WaitlistQuery,
    response=list[s.WaitlistEntryOut],
    auth=True,
    errors=(400, 401, 403),
)
@staff_required
def location_waitlist(location: str) -> ResponseReturnValue:
    loc = _staff_location(location)
    query = parse_query(s.WaitlistQuery)
    status = None if query.status == "all" else WaitlistStatus(query.status)
    entries = waitlist.entries_for_location(db.session(), loc, status=status)
    offers = waitlist.offers_for_entries(db.session(), [e.id for e in entries])
    tz = ZoneInfo(loc.timezone)
    return jsonify([_entry_out(e, offers[e.id], tz) for e in entries])


@route(
    "/locations/<location>/waitlist/<int:entry_id>/offers",
    "POST",
    summary="Offer a start to a waitlisted patient by hand (texted by the worker)",
    body=s.WaitlistOfferIn,
    response=s.WaitlistOfferOut,
    status=201,
    auth=True,
    errors=(401, 403, 404, 409, 422),
)
@staff_required
def offer_by_hand(location: str, entry_id: int) -> ResponseReturnValue:
    loc = _staff_location(location)
    entry = db.session.get(WaitlistEntry, entry_id) if entry_id <= 2**31 - 1 else None
    if entry is None or entry.location_id != loc.id:
        raise NotFound("No such waitlist entry.")
    body = parse_body(s.WaitlistOfferIn)
    offer = waitlist.offer_by_hand(
        db.session(), entry, body.start, now=now(), settings=settings(), staff=g.staff
    )
    api_audit(
        "waitlist.offered",
        f"waitlist entry {entry.id} offer {offer.id}",
        location_id=loc.id,
        patient_id=entry.patient_id,
        details={"start": body.start.isoformat()},
    )
    db.session.commit()
    return jsonify(_offer_out(offer, ZoneInfo(loc.timezone)).model_dump()), 201
