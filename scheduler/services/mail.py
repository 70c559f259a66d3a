"""Outgoing e-mail: the MailSender adapters (SMTP, log), the outbox, and the invite mails.

A change to an appointment queues its mail as an outbox row in the same transaction
(`queue_invite`); `deliver_pending` later claims due rows atomically, sends them and records
the outcome, one commit per row, retrying transient failures with backoff. A crash between an
SMTP server's "250 OK" and the commit that records it can send a mail twice (after the claim's
lease runs out); nothing else can.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email.policy
import json
import logging
import secrets
import smtplib
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, quote
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import idna
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from sqlalchemy import and_, exists, insert, or_, select, update
from sqlalchemy.orm import Session, aliased

from scheduler import paths
from scheduler.models import Appointment, MailOutbox, MailStatus
from scheduler.services import invites
from scheduler.services.settings import ClinicSettings

log = logging.getLogger("scheduler.mail")

TEMPLATES = paths.TEMPLATES / "email"
# session.info key: ids of the rows queued in this session, for prompt delivery after commit.
QUEUED_KEY = "chairside.mail_queued"
LEASE = dt.timedelta(minutes=10)  # a claim older than this is presumed dead and reclaimed
MAX_ATTEMPTS = 12
FIRST_RETRY = dt.timedelta(minutes=1)
MAX_RETRY = dt.timedelta(hours=2)


# --- senders --------------------------------------------------------------------------------------


class MailDeliveryError(Exception):
    """A send that did not happen; `reason` is safe to log (no addresses, no content).

    `permanent`: sending the same mail again cannot help (a 5xx answer, a refused recipient,
    an address the server cannot carry): the row fails at once. Otherwise (4xx answers, the
    server unreachable, our own configuration) it is retried with backoff.
    """

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


class MailSender(Protocol):
    def send(self, envelope_from: str, recipients: Sequence[str], message: bytes) -> None:
        """Hand the message over, or raise MailDeliveryError."""


def wire_address(address: str) -> str:
    """The address as SMTP carries it: an internationalized domain in its ASCII form (IDNA,
    `exämple.org` -> `xn--exmple-cua.org`); the local part as it is. A domain IDNA cannot
    encode is left as written (only an SMTPUTF8 server can take it then)."""
    local, at, domain = address.strip().rpartition("@")
    if not at or domain.isascii():
        return address.strip()
    with contextlib.suppress(idna.IDNAError):
        domain = idna.encode(domain, uts46=True).decode("ascii")
    return f"{local}@{domain}"


def needs_smtputf8(address: str) -> bool:
    """True when the address stays non-ASCII on the wire (a non-ASCII local part, RFC 6531)."""
    return not wire_address(address).isascii()


def _smtp_error(exc: smtplib.SMTPResponseException, what: str) -> MailDeliveryError:
    """A server's answer: 5xx is permanent, anything else (4xx) worth another try."""
    return MailDeliveryError(f"{what} ({exc.smtp_code})", permanent=500 <= exc.smtp_code < 600)


class SmtpMailSender:
    """One SMTP connection per message (STARTTLS or implicit TLS on port 465, optional login).

    Addresses go out with internationalized domains in their IDNA form; a non-ASCII local part
    is sent with SMTPUTF8 when the server offers it, and refused for good when it does not.
    """

    def __init__(
        self,
        host: str,
        port: int = 587,
        *,
        username: str = "",
        password: str = "",
        starttls: bool = True,
        timeout: float = 10.0,
    ) -> None:
        self.host, self.port = host, port
        self.username, self.password = username, password
        self.starttls, self.timeout = starttls, timeout

    def _connect(self) -> smtplib.SMTP:
        if self.port == 465:
            return smtplib.SMTP_SSL(
                self.host, self.port, timeout=self.timeout, context=ssl.create_default_context()
            )
        smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        if self.starttls:
            try:
                smtp.ehlo()
                if not smtp.has_extn("starttls"):
                    # Our configuration, not the mail: retried, so fixing SMTP_STARTTLS (or the
                    # server) lets the outbox drain.
                    raise MailDeliveryError(
                        "the SMTP server does not offer STARTTLS (SMTP_STARTTLS is on)"
                    )
                smtp.starttls(context=ssl.create_default_context())
            except BaseException:
                smtp.close()
                raise
        return smtp

    def send(self, envelope_from: str, recipients: Sequence[str], message: bytes) -> None:
        sender = wire_address(envelope_from)
        to = [wire_address(r) for r in recipients]
        utf8 = not sender.isascii() or any(not r.isascii() for r in to)
        try:
            with self._connect() as smtp:
                if self.username:
                    smtp.login(self.username, self.password)
                smtp.ehlo_or_helo_if_needed()
                if utf8 and not smtp.has_extn("smtputf8"):
                    raise MailDeliveryError(
                        "the SMTP server does not support SMTPUTF8, "
                        "needed for an address with a non-ASCII local part",
                        permanent=True,
                    )
                smtp.sendmail(sender, to, message, mail_options=["SMTPUTF8"] if utf8 else [])
        except MailDeliveryError:
            raise
        except smtplib.SMTPRecipientsRefused as exc:
            codes = sorted({code for code, _ in exc.recipients.values()})
            permanent = all(500 <= code < 600 for code in codes)
            raise MailDeliveryError(
                f"recipient refused ({', '.join(map(str, codes))})", permanent=permanent
            ) from None
        except smtplib.SMTPDataError as exc:
            raise _smtp_error(exc, "message refused") from None
        except smtplib.SMTPSenderRefused as exc:
            raise _smtp_error(exc, "sender refused") from None
        except smtplib.SMTPAuthenticationError as exc:
            # Our credentials, not the mail: retried, so fixing SMTP_PASSWORD drains the outbox.
            raise MailDeliveryError(f"authentication failed ({exc.smtp_code})") from None
        except smtplib.SMTPResponseException as exc:
            raise _smtp_error(exc, f"SMTP server answered {type(exc).__name__}") from None
        except smtplib.SMTPNotSupportedError:
            raise MailDeliveryError(
                "the SMTP server does not support an extension this mail needs", permanent=True
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise MailDeliveryError(f"{type(exc).__name__}: SMTP server unreachable") from None


class LogMailSender:
    """Without SMTP_HOST: mails are written to the log (subject and size only, no addresses).

    Its one log line is the mail's outcome (`reports_outcome`): the outbox adds no "sent" line.
    """

    reports_outcome = True

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or log

    def send(self, envelope_from: str, recipients: Sequence[str], message: bytes) -> None:
        parsed = email.message_from_bytes(message, policy=email.policy.default)
        methods = [
            str(part.get_param("method"))
            for part in parsed.walk()
            if part.get_content_type() == "text/calendar" and part.get_param("method")
        ]
        self.logger.info(
            "mail not sent (SMTP_HOST is not set): subject %r, calendar method %s, %d octets",
            str(parsed.get("Subject", "")),
            ",".join(methods) or "-",
            len(message),
        )


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "on"}
    return bool(value)


def sender_from_config(config: Mapping[str, Any]) -> MailSender:
    """SMTP when SMTP_HOST is set, else the log sender."""
    host = str(config.get("SMTP_HOST") or "").strip()
    if not host:
        return LogMailSender()
    return SmtpMailSender(
        host,
        int(config.get("SMTP_PORT") or 587),
        username=str(config.get("SMTP_USERNAME") or ""),
        password=str(config.get("SMTP_PASSWORD") or ""),
        starttls=_flag(config.get("SMTP_STARTTLS", True)),
        timeout=float(config.get("SMTP_TIMEOUT") or 10.0),
    )


# --- rendering ------------------------------------------------------------------------------------

_env = Environment(
    loader=FileSystemLoader(str(TEMPLATES)),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    keep_trailing_newline=True,
)


def _when(instant: dt.datetime, tz: ZoneInfo) -> str:
    local = instant.astimezone(tz)
    return f"{local:%A} {local.day} {local:%B %Y}, {local:%H:%M} ({local.tzname()})"


def _mailbox(name: str, addr: str) -> Address | str:
    """A To/From header value; `addr` as it goes on the wire (see `wire_address`)."""
    clean = " ".join(name.split())
    if not addr.isascii():
        # A non-ASCII local part (sent with SMTPUTF8): raw UTF-8 in the header (RFC 6532).
        return f'"{quote(clean)}" <{addr}>' if clean else addr
    try:
        return Address(display_name=clean, addr_spec=addr)
    except (ValueError, IndexError):
        return addr


def invite_payload(
    appointment: Appointment, change: str, method: str, settings: ClinicSettings, now: dt.datetime
) -> dict[str, Any]:
    """What the invite mail will say, as JSON-able plain values (cheap: no rendering here)."""
    location = appointment.location
    tz = ZoneInfo(location.timezone)
    data = invites.invite_data(appointment, settings, now, method)
    return {
        "change": change,
        "invite": data.to_dict(),
        "mail": {
            "change": change,
            "method": method,
            "first_name": (appointment.patient.name.split() or [""])[0],
            "patient_name": appointment.patient.name,
            "title": data.title,
            "when": _when(appointment.start_at, tz),
            "short_when": _short_when(appointment.start_at, tz),
            "until": f"{appointment.end_at.astimezone(tz):%H:%M}",
            "location_name": location.name,
            "address": location.address,
            "phone": location.phone,
            "clinic_name": settings.clinic_name,
            "manage_url": settings.manage_url(appointment.manage_token),
        },
    }


def subject(heading: str, title: str, when: str) -> str:
    """'Cancelled: Appointment at Harbor Clinic, Mission Bay - Wed 2 Dec 2026, 10:00 PST':
    single spaces only (names are collapsed), short enough to stay on one header line."""
    return " ".join(f"{heading}: {title} - {when}".split())


class SubjectHeader(str):
    """The Subject header, folded here when it is not ASCII: the standard library's folder
    breaks a line before an encoded word and keeps a space on both sides of the break, which
    reads as a double space once unfolded ("San Francisco  – Mission"). Encoded words
    joined by folding whitespace decode with nothing between them (RFC 2047), so the text
    comes back exactly."""

    name = "Subject"
    defects: tuple[()] = ()

    def fold(self, *, policy: email.policy.Policy) -> str:
        text = str(self)
        if text.isascii():
            return policy.header_factory(self.name, text).fold(policy=policy)  # type: ignore[attr-defined, no-any-return]
        linesep = policy.linesep
        encoded = Header(
            text, "utf-8", maxlinelen=policy.max_line_length, header_name=self.name
        ).encode(linesep=linesep)
        return f"{self.name}: {encoded}{linesep}"


def _short_when(instant: dt.datetime, tz: ZoneInfo) -> str:
    local = instant.astimezone(tz)
    return f"{local:%a} {local.day} {local:%b %Y}, {local:%H:%M} {local.tzname()}"


def render_invite_mail(
    payload: Mapping[str, Any], *, envelope_from: str, recipient: str
) -> EmailMessage:
    """multipart/mixed > multipart/alternative (plain, html, text/calendar) + invite.ics."""
    data = invites.InviteData.from_dict(payload["invite"])
    ics = invites.render_ics(data)
    context = dict(payload["mail"])
    heading = {"booked": "Booked", "rescheduled": "Changed", "cancelled": "Cancelled"}.get(
        payload["change"], "Updated"
    )
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["Subject"] = SubjectHeader(
        subject(heading, context["title"], context.get("short_when") or context["when"])
    )
    msg["From"] = _mailbox(context["clinic_name"], wire_address(envelope_from))
    msg["To"] = _mailbox(context["patient_name"], wire_address(recipient))
    msg["Date"] = format_datetime(data.dtstamp)
    domain = envelope_from.rpartition("@")[2] or "chairside.invalid"
    msg["Message-ID"] = make_msgid("invite", domain=domain)
    msg["Auto-Submitted"] = "auto-generated"
    # Quoted-printable keeps the message 7-bit, so no server needs 8BITMIME.
    msg.set_content(
        _env.get_template("invite.txt").render(context), charset="utf-8", cte="quoted-printable"
    )
    msg.add_alternative(
        _env.get_template("invite.html").render(context),
        subtype="html",
        charset="utf-8",
        cte="quoted-printable",
    )
    # Bytes, not str: a str part would have its CRLF line ends turned into LF.
    msg.add_alternative(
        ics,
        maintype="text",
        subtype="calendar",
        params={"method": data.method, "charset": "UTF-8"},
    )
    msg.make_mixed()
    msg.add_attachment(ics, maintype="application", subtype="ics", filename="invite.ics")
    return msg


def course_payload(
    appointments: Sequence[Appointment],
    change: str,
    method: str,
    settings: ClinicSettings,
    now: dt.datetime,
    manage_token: str,
) -> dict[str, Any]:
    """What a course's one e-mail says: every session listed, and each session's own invite
    (its own UID and SEQUENCE: one iTIP object carries one UID)."""
    first = appointments[0]
    location = first.location
    tz = ZoneInfo(location.timezone)
    datas = [invites.invite_data(a, settings, now, method) for a in appointments]
    held = [a.course_session for a in appointments if a.awaiting_review and a.course_session]
    return {
        "change": change,
        "invites": [d.to_dict() for d in datas],
        "mail": {
            "change": change,
            "method": method,
            "first_name": (first.patient.name.split() or [""])[0],
            "patient_name": first.patient.name,
            "title": datas[0].title,
            "count": len(appointments),
            "sessions": [
                {
                    "number": a.course_session or i + 1,
                    "when": _when(a.start_at, tz),
                    "short_when": _short_when(a.start_at, tz),
                    "until": f"{a.end_at.astimezone(tz):%H:%M}",
                    "held": bool(a.awaiting_review),
                }
                for i, a in enumerate(appointments)
            ],
            "held_after": min(held) - 1 if held and change == "booked" else None,
            "location_name": location.name,
            "address": location.address,
            "phone": location.phone,
            "clinic_name": settings.clinic_name,
            "manage_url": settings.manage_url(manage_token),
        },
    }


def render_course_mail(
    payload: Mapping[str, Any], *, envelope_from: str, recipient: str
) -> EmailMessage:
    """multipart/mixed > multipart/alternative (plain, html) + one visit-N.ics per session,
    each a text/calendar iTIP message (REQUEST or CANCEL) for that session alone."""
    datas = [invites.InviteData.from_dict(d) for d in payload["invites"]]
    context = dict(payload["mail"])
    heading = {"booked": "Booked", "stopped": "Cancelled", "cancelled": "Cancelled"}.get(
        payload["change"], "Updated"
    )
    sessions = context["sessions"]
    span = sessions[0]["short_when"]
    if len(sessions) > 1:
        span = f"{len(sessions)} visits from {span}"
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["Subject"] = SubjectHeader(subject(heading, context["title"], span))
    msg["From"] = _mailbox(context["clinic_name"], wire_address(envelope_from))
    msg["To"] = _mailbox(context["patient_name"], wire_address(recipient))
    msg["Date"] = format_datetime(datas[0].dtstamp)
    domain = envelope_from.rpartition("@")[2] or "chairside.invalid"
    msg["Message-ID"] = make_msgid("course", domain=domain)
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(
        _env.get_template("course.txt").render(context), charset="utf-8", cte="quoted-printable"
    )
    msg.add_alternative(
        _env.get_template("course.html").render(context),
        subtype="html",
        charset="utf-8",
        cte="quoted-printable",
    )
    msg.make_mixed()
    for data, item in zip(datas, sessions, strict=True):
        # Bytes, not str: a str part would have its CRLF line ends turned into LF.
        msg.add_attachment(
            invites.render_ics(data),
            maintype="text",
            subtype="calendar",
            params={"method": data.method, "charset": "UTF-8"},
            filename=f"visit-{item['number']}.ics",
        )
    return msg


RENDERERS = {"invite": render_invite_mail, "course": render_course_mail}


# --- the outbox -----------------------------------------------------------------------------------


_QUEUE = insert(MailOutbox.__table__).returning(MailOutbox.__table__.c.id)


def queue(
    session: Session,
    *,
    envelope_from: str,
    recipient: str,
    now: dt.datetime,
    message: EmailMessage | None = None,
    payload: Mapping[str, Any] | None = None,
    kind: str = "invite",
    appointment_id: int | None = None,
    method: str = "",
    ics_sequence: int | None = None,
) -> int:
    """Add a mail to the outbox and return its id: it goes out after the caller commits.

    Give a finished `message`, or a `payload` that the renderer for `kind` turns into one when
    the mail is first claimed (outside the caller's transaction). One plain INSERT: booking
    runs this on every request.
    """
    if (message is None) == (payload is None):
        raise ValueError("give either a message or a payload")
    row = {
        "appointment_id": appointment_id,
        "kind": kind,
        "method": method,
        "ics_sequence": ics_sequence,
        "envelope_from": envelope_from,
        "recipient": recipient,
        "payload": json.dumps(payload, ensure_ascii=False) if payload is not None else None,
        "message": message.as_bytes(policy=email.policy.SMTP) if message is not None else None,
        "status": MailStatus.PENDING,
        "attempts": 0,
        "next_attempt_at": now,
        "last_error": "",
        "created_at": now,
    }
    row_id: int = session.execute(_QUEUE, row).scalar_one()
    session.info.setdefault(QUEUED_KEY, []).append(row_id)
    return row_id


def queue_invite(
    session: Session,
    appointment: Appointment,
    change: str,
    now: dt.datetime,
    settings: ClinicSettings,
) -> int | None:
    """REQUEST on booked/rescheduled, CANCEL on cancelled; plain status changes owe no mail."""
    if change in ("booked", "rescheduled"):
        method = invites.REQUEST
    elif change == "cancelled":
        method = invites.CANCEL
    else:
        return None
    recipient = (appointment.patient.email or "").strip()
    if not recipient:
        return None
    return queue(
        session,
        envelope_from=settings.mail_from,
        recipient=recipient,
        now=now,
        payload=invite_payload(appointment, change, method, settings, now),
        kind="invite",
        appointment_id=appointment.id,
        method=method,
        ics_sequence=appointment.ics_sequence,
    )


def queue_course_mail(
    session: Session,
    appointments: Sequence[Appointment],
    change: str,
    now: dt.datetime,
    settings: ClinicSettings,
    manage_token: str,
) -> int | None:
    """One e-mail for several sessions of a course ("booked": REQUEST invites; "cancelled" or
    "stopped": CANCEL), instead of one mail per session. A later change to one session (a move)
    goes out as that session's own invite (`queue_invite`)."""
    if not appointments:
        return None
    recipient = (appointments[0].patient.email or "").strip()
    if not recipient:
        return None
    method = invites.REQUEST if change == "booked" else invites.CANCEL
    return queue(
        session,
        envelope_from=settings.mail_from,
        recipient=recipient,
        now=now,
        payload=course_payload(appointments, change, method, settings, now, manage_token),
        kind="course",
        method=method,
    )


def render(kind: str, payload: str, *, envelope_from: str, recipient: str) -> bytes:
    """The RFC 5322 bytes of a queued payload (UTF-8 headers when an address needs SMTPUTF8)."""
    message = RENDERERS[kind](json.loads(payload), envelope_from=envelope_from, recipient=recipient)
    utf8 = needs_smtputf8(recipient) or needs_smtputf8(envelope_from)
    return message.as_bytes(policy=email.policy.SMTPUTF8 if utf8 else email.policy.SMTP)


def _claimable(now: dt.datetime) -> Any:
    return or_(
        and_(MailOutbox.status == MailStatus.PENDING, MailOutbox.next_attempt_at <= now),
        and_(MailOutbox.status == MailStatus.SENDING, MailOutbox.claimed_at <= now - LEASE),
    )


@dataclass(frozen=True)
class Claim:
    """What a worker needs of a claimed row, read inside the claiming transaction."""

    id: int
    token: str
    attempts: int
    kind: str
    appointment_id: int | None
    ics_sequence: int | None
    envelope_from: str
    recipient: str
    payload: str | None
    message: bytes | None


def _claim_next(session: Session, now: dt.datetime, ids: Sequence[int] | None) -> Claim | None:
    """Claim the oldest due row and commit; None when nothing is due. No transaction is left open."""
    while True:
        query = select(MailOutbox.id).where(_claimable(now)).order_by(MailOutbox.id).limit(1)
        if ids is not None:
            query = query.where(MailOutbox.id.in_(ids))
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        row_id = session.scalar(query)
        if row_id is None:
            session.commit()
            return None
        token = secrets.token_hex(16)
        # Conditional: on SQLite this is the claim (the row must still be claimable); on
        # PostgreSQL the row lock already excludes other workers.
        result = session.execute(
            update(MailOutbox)
            .where(MailOutbox.id == row_id, _claimable(now))
            .values(
                status=MailStatus.SENDING,
                claimed_at=now,
                claim_token=token,
                attempts=MailOutbox.attempts + 1,
            )
            .execution_options(synchronize_session=False)
        )
        claim = None
        if result.rowcount == 1:  # type: ignore[attr-defined]
            row = session.get(MailOutbox, row_id, populate_existing=True)
            if row is not None:
                claim = Claim(
                    id=row.id,
                    token=token,
                    attempts=row.attempts,
                    kind=row.kind,
                    appointment_id=row.appointment_id,
                    ics_sequence=row.ics_sequence,
                    envelope_from=row.envelope_from,
                    recipient=row.recipient,
                    payload=row.payload,
                    message=row.message,
                )
        session.commit()
        if claim is not None:
            return claim


def _superseded(session: Session, claim: Claim) -> bool:
    """A newer invite for the same visit has already gone out: this one would only confuse."""
    if claim.appointment_id is None or claim.ics_sequence is None or claim.kind != "invite":
        return False
    newer = aliased(MailOutbox)
    found = session.scalar(
        select(
            exists().where(
                newer.appointment_id == claim.appointment_id,
                newer.kind == "invite",
                newer.ics_sequence > claim.ics_sequence,
                newer.status == MailStatus.SENT,
            )
        )
    )
    session.commit()
    return bool(found)


def _finish(session: Session, row_id: int, token: str, **values: Any) -> None:
    session.execute(
        update(MailOutbox)
        .where(MailOutbox.id == row_id, MailOutbox.claim_token == token)
        .values(claim_token=None, **values)
        .execution_options(synchronize_session=False)
    )
    session.commit()


def retry_delay(attempts: int) -> dt.timedelta:
    """1, 2, 4, ... minutes, at most two hours."""
    delay: dt.timedelta = min(FIRST_RETRY * (2 ** max(attempts - 1, 0)), MAX_RETRY)
    return delay


def _render_once(session: Session, claim: Claim) -> bytes:
    """The claim's message, rendered from its payload (and kept) on the first attempt."""
    if claim.message is not None:
        return claim.message
    if claim.payload is None:
        raise MailDeliveryError("nothing to send", permanent=True)
    try:
        message = render(
            claim.kind,
            claim.payload,
            envelope_from=claim.envelope_from,
            recipient=claim.recipient,
        )
    except Exception as exc:
        log.exception("mail %s could not be rendered", claim.id)
        raise MailDeliveryError(f"{type(exc).__name__} while rendering") from None
    # Kept, so a retry sends the very same bytes (same Message-ID: receivers can deduplicate).
    session.execute(
        update(MailOutbox)
        .where(MailOutbox.id == claim.id, MailOutbox.claim_token == claim.token)
        .values(message=message)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return message


def deliver_pending(
    session: Session,
    sender: MailSender,
    now: dt.datetime,
    limit: int = 100,
    *,
    ids: Sequence[int] | None = None,
) -> tuple[int, int]:
    """Send up to `limit` due mails (only `ids` when given); returns (sent, failed).

    A worker: it commits, once per claim and once per outcome. Safe with any number of
    concurrent workers (FOR UPDATE SKIP LOCKED on PostgreSQL, conditional UPDATE on SQLite).
    No transaction (and on SQLite no write lock) is held while rendering or talking to SMTP.
    """
    sent = failed = 0
    session.commit()  # start from a clean transaction; callers' work is already committed
    for _ in range(limit):
        claimed = _claim_next(session, now, ids)
        if claimed is None:
            break
        row_id, token, attempts = claimed.id, claimed.token, claimed.attempts
        if _superseded(session, claimed):
            _finish(session, row_id, token, status=MailStatus.SUPERSEDED)
            log.info("mail %s skipped: a newer invite for the visit was sent", row_id)
            continue
        try:
            message = _render_once(session, claimed)
            sender.send(claimed.envelope_from, [claimed.recipient], message)
        except Exception as exc:
            failed += 1
            error = exc if isinstance(exc, MailDeliveryError) else None
            reason = error.reason if error else f"{type(exc).__name__} in the mail sender"
            if (error and error.permanent) or attempts >= MAX_ATTEMPTS:
                _finish(session, row_id, token, status=MailStatus.FAILED, last_error=reason[:200])
                log.warning(
                    "mail %s failed for good after %s attempts: %s", row_id, attempts, reason
                )
            else:
                retry_at = now + retry_delay(attempts)
                _finish(
                    session,
                    row_id,
                    token,
                    status=MailStatus.PENDING,
                    next_attempt_at=retry_at,
                    last_error=reason[:200],
                )
                log.warning(
                    "mail %s not sent (attempt %s): %s; next attempt at %s",
                    row_id,
                    attempts,
                    reason,
                    retry_at.isoformat(),
                )
            continue
        _finish(session, row_id, token, status=MailStatus.SENT, sent_at=now, last_error="")
        sent += 1
        if not getattr(sender, "reports_outcome", False):
            log.info("mail %s sent", row_id)
    return sent, failed
