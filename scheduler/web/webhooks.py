"""Twilio webhooks: inbound SMS (confirm, opt-out, opt-in, help) and delivery status callbacks.

Every request must carry a valid X-Twilio-Signature for PUBLIC_BASE_URL + path (+ query), the
URL Twilio was given, so validation also works behind a proxy; anything else is 403.
"""

from __future__ import annotations

from flask import Blueprint, Flask, Response, abort, current_app, request
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from scheduler.extensions import csrf, db
from scheduler.services import sms_replies
from scheduler.web.common import now, settings
from scheduler.web.inputs import query_id

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks/twilio")


def _public_url() -> str:
    base = str(current_app.config.get("PUBLIC_BASE_URL", "")).rstrip("/")
    query = request.query_string.decode()
    return f"{base}{request.path}" + (f"?{query}" if query else "")


def _require_signature() -> None:
    token = current_app.config.get("TWILIO_AUTH_TOKEN") or ""
    signature = request.headers.get("X-Twilio-Signature", "")
    if not token or not signature:
        abort(403)
    if not RequestValidator(token).validate(_public_url(), request.form.to_dict(), signature):
        current_app.logger.warning("Twilio webhook with a bad signature on %s", request.path)
        abort(403)


def _twiml(text: str | None) -> Response:
    reply = MessagingResponse()
    if text:
        reply.message(text)
    return Response(str(reply), mimetype="text/xml")


@bp.post("/sms")
def inbound_sms() -> Response:
    _require_signature()
    phone = request.form.get("From", "").strip()
    message_sid = request.form.get("MessageSid") or request.form.get("SmsSid") or ""
    if not phone or not message_sid:
        abort(400, "From and MessageSid are required")
    result = sms_replies.handle_inbound(
        db.session(),
        phone=phone,
        body=request.form.get("Body", ""),
        message_sid=message_sid,
        now=now(),
        settings=settings(),
        opt_out_type=request.form.get("OptOutType", ""),
    )
    db.session.commit()
    return _twiml(result.reply)


@bp.post("/status")
def status_callback() -> Response:
    _require_signature()
    reminder_id = query_id(request.args.get("r"))
    sms_replies.record_status(
        db.session(),
        message_sid=request.form.get("MessageSid") or request.form.get("SmsSid") or "",
        status=request.form.get("MessageStatus") or request.form.get("SmsStatus") or "",
        error_code=request.form.get("ErrorCode", ""),
        now=now(),
        reminder_id=reminder_id,
    )
    db.session.commit()
    return Response(status=204)


def init_app(app: Flask) -> None:
    csrf.exempt(bp)
    app.register_blueprint(bp)
