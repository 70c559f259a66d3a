"""Staff accounts: passwords (Argon2), API tokens (stored as SHA-256), access to locations."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import case, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from scheduler.models import ApiToken, Location, SignInFailure, StaffRole, StaffUser
from scheduler.services.errors import Forbidden, InvalidInput, NotFound
from scheduler.services.patients import normalize_email


def password_hasher(params: Mapping[str, Any] | None = None) -> PasswordHasher:
    return PasswordHasher(**(params or {}))


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(session: Session, staff: StaffUser, now: dt.datetime, label: str = "") -> str:
    """A new API token for `staff`; the plain token is returned once and never stored."""
    token = "cs_" + secrets.token_urlsafe(32)
    session.add(ApiToken(staff=staff, token_hash=hash_token(token), label=label, created_at=now))
    session.flush()
    return token


def staff_for_token(session: Session, token: str, now: dt.datetime) -> StaffUser | None:
    """The active staff user owning an unrevoked `token`, or None."""
    if not token or len(token) > 200:
        return None
    row = session.scalars(select(ApiToken).where(ApiToken.token_hash == hash_token(token))).first()
    if row is None or row.revoked_at is not None or not row.staff.active:
        return None
    row.last_used_at = now
    return row.staff


MIN_PASSWORD = 10


def normalize_staff_email(raw: str) -> str:
    """The one form a staff e-mail is stored and looked up in: valid, and lower-case.

    People type addresses in any case, so `ADMIN@clinic` and `admin@clinic` are one account.
    """
    return normalize_email(raw).lower()


def find_by_email(session: Session, raw: str) -> StaffUser | None:
    """The staff user with this address (any case), or None (also for a malformed address)."""
    try:
        email = normalize_staff_email(raw)
    except InvalidInput:
        return None
    return session.scalars(select(StaffUser).where(StaffUser.email == email)).first()


def save_staff(
    session: Session,
    user: StaffUser | None,
    *,
    email: str,
    name: str,
    role: str,
    password: str,
    locations: list[Location],
    active: bool,
    hasher: PasswordHasher,
    now: dt.datetime,
    fields: dict[str, str] | None = None,
) -> StaffUser:
    """Create (user None) or update a staff user: the rules every path (CLI, settings) shares.

    `fields` carries problems the caller found while reading its input (an unknown location);
    they are reported together with these rules' own.
    """
    fields = dict(fields or {})
    name = " ".join(name.split())
    if not name:
        fields["name"] = "required"
    elif len(name) > 200:
        fields["name"] = "at most 200 characters"
    try:
        email = normalize_staff_email(email)
    except InvalidInput:
        email = ""
        fields["email"] = "not a valid e-mail address"
    if email:
        other = session.scalars(select(StaffUser).where(StaffUser.email == email)).first()
        if other is not None and other is not user:
            fields["email"] = "already used by another staff user"
    try:
        staff_role = StaffRole(role)
    except ValueError:
        fields["role"] = "unknown role"
        staff_role = StaffRole.FRONT_DESK
    if user is None and not password:
        fields["password"] = "required"
    elif password and len(password) < MIN_PASSWORD:
        fields["password"] = f"at least {MIN_PASSWORD} characters"
    if staff_role != StaffRole.ADMIN and not locations and "locations" not in fields:
        fields["locations"] = "choose at least one location"
    if fields:
        raise InvalidInput("Some fields need correcting.", fields)
    if user is None:
        user = StaffUser(email=email, name=name, active=True)
        session.add(user)
    elif user.active and not active:
        deactivate(session, user, now=now)
    user.email, user.name, user.role = email, name, staff_role
    user.active = active
    user.locations = locations
    if password:
        user.password_hash = hasher.hash(password)
        clear_failures(session, email)  # a new password lifts a lockout
    session.flush()
    return user


def deactivate(session: Session, user: StaffUser, *, now: dt.datetime) -> None:
    """Switch a staff user off for good: their API tokens are revoked and their sessions end.

    Activating the account again later revives neither: they need a new token and a new sign-in.
    """
    user.active = False
    user.session_epoch = (user.session_epoch or 0) + 1
    for token in user.tokens:
        if token.revoked_at is None:
            token.revoked_at = now
    session.flush()


def create_staff(
    session: Session,
    *,
    email: str,
    name: str,
    password: str,
    role: str,
    location_slugs: list[str] | None = None,
    hasher: PasswordHasher,
    now: dt.datetime | None = None,
) -> StaffUser:
    """A new staff user, with locations named by slug (the CLI's and the demo's way)."""
    fields: dict[str, str] = {}
    locations = []
    for slug in location_slugs or []:
        location = session.scalars(select(Location).where(Location.slug == slug)).first()
        if location is None:
            fields["locations"] = f"unknown location {slug}"
        else:
            locations.append(location)
    return save_staff(
        session,
        None,
        email=email,
        name=name,
        role=role,
        password=password,
        locations=locations,
        active=True,
        hasher=hasher,
        now=now or dt.datetime.now(dt.UTC),
        fields=fields,
    )


# --- failed sign-ins ------------------------------------------------------------------------------
# Counted per typed address, whether or not a staff user has it: a locked-out address answers the
# same whoever owns it, so sign-in does not tell which addresses exist.


def _failure_key(raw_email: str) -> str:
    try:
        email = normalize_staff_email(raw_email)
    except InvalidInput:
        email = " ".join(raw_email.split()).lower()
    return hashlib.sha256(f"staff-sign-in|{email}".encode()).hexdigest()


def locked_until(session: Session, raw_email: str, *, now: dt.datetime) -> dt.datetime | None:
    """When sign-in for this address opens again, or None when it is open now."""
    row = session.get(SignInFailure, _failure_key(raw_email))
    if row is None or row.locked_until is None or row.locked_until <= now:
        return None
    return row.locked_until


def record_failure(
    session: Session, raw_email: str, *, now: dt.datetime, attempts: int, pause: dt.timedelta
) -> bool:
    """Count a failed sign-in (one statement, safe across processes); True when it locks."""
    table = SignInFailure.__table__
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    stmt = insert(table).values(key=_failure_key(raw_email), failures=1, last_failed_at=now)
    # Failures older than the pause are forgotten: the count starts again.
    stale = table.c.last_failed_at < now - pause
    upsert = stmt.on_conflict_do_update(
        index_elements=["key"],
        set_={
            "failures": case((stale, 1), else_=table.c.failures + 1),
            "last_failed_at": now,
        },
    ).returning(table.c.failures)
    failures = int(session.execute(upsert).scalar_one())
    locked = failures >= attempts
    if locked:
        session.execute(
            table.update()
            .where(table.c.key == _failure_key(raw_email))
            .values(failures=0, locked_until=now + pause)
        )
    # Keep the table small: forget addresses idle for a day.
    session.execute(
        delete(SignInFailure).where(
            SignInFailure.last_failed_at < now - dt.timedelta(days=1),
            (SignInFailure.locked_until.is_(None)) | (SignInFailure.locked_until < now),
        )
    )
    session.flush()
    return locked


def clear_failures(session: Session, raw_email: str) -> None:
    session.execute(delete(SignInFailure).where(SignInFailure.key == _failure_key(raw_email)))


def verify_password(hasher: PasswordHasher, staff: StaffUser, password: str) -> bool:
    try:
        hasher.verify(staff.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
    if hasher.check_needs_rehash(staff.password_hash):
        staff.password_hash = hasher.hash(password)
    return True


def require_access(staff: StaffUser, location: Location) -> None:
    if not staff.can_access(location.id):
        raise Forbidden("You do not have access to this location.")


@dataclass(frozen=True)
class PasswordReset:
    email: str
    password: str
    revoked_tokens: int


def reset_password(
    session: Session,
    *,
    email: str,
    password: str | None,
    hasher: PasswordHasher,
    now: dt.datetime,
    revoke_tokens: bool = False,
) -> PasswordReset:
    """Give a staff user a new password (generated when `password` is None) and lift a sign-in
    lockout. Sessions end by themselves (they carry a fingerprint of the password hash); API
    tokens only when asked. The e-mail matches in any letter case."""
    staff = find_by_email(session, email)
    if staff is None:
        raise NotFound("No staff user with that e-mail.", {"email": "no such staff user"})
    if password is None:
        password = secrets.token_urlsafe(12)
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(
            "Password too short.", {"password": f"at least {MIN_PASSWORD} characters"}
        )
    staff.password_hash = hasher.hash(password)
    clear_failures(session, staff.email)
    revoked = 0
    if revoke_tokens:
        for token in staff.tokens:
            if token.revoked_at is None:
                token.revoked_at = now
                revoked += 1
    session.flush()
    return PasswordReset(email=staff.email, password=password, revoked_tokens=revoked)
