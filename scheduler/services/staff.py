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
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from scheduler.models import ApiToken, Location, StaffRole, StaffUser
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


def create_staff(
    session: Session,
    *,
    email: str,
    name: str,
    password: str,
    role: str,
    location_slugs: list[str] | None = None,
    hasher: PasswordHasher,
) -> StaffUser:
    try:
        role = StaffRole(role)
    except ValueError as exc:
        raise InvalidInput("Unknown role.", {"role": "unknown role"}) from exc
    email = normalize_email(email)
    if len(password) < 10:
        raise InvalidInput("Password too short.", {"password": "at least 10 characters"})
    if session.scalars(select(StaffUser).where(StaffUser.email == email)).first():
        raise InvalidInput("That e-mail is taken.", {"email": "already a staff user"})
    locations = []
    for slug in location_slugs or []:
        location = session.scalars(select(Location).where(Location.slug == slug)).first()
        if location is None:
            raise NotFound("No such location.", {"location": f"unknown location {slug}"})
        locations.append(location)
    staff = StaffUser(
        email=email,
        name=name,
        password_hash=hasher.hash(password),
        role=role,
        active=True,
        locations=locations,
    )
    session.add(staff)
    session.flush()
    return staff


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
    wanted = email.strip().lower()
    staff = session.scalars(select(StaffUser).where(func.lower(StaffUser.email) == wanted)).first()
    if staff is None:
        raise NotFound("No staff user with that e-mail.", {"email": "no such staff user"})
    if password is None:
        password = secrets.token_urlsafe(12)
    if len(password) < 10:
        raise InvalidInput("Password too short.", {"password": "at least 10 characters"})
    staff.password_hash = hasher.hash(password)
    staff.failed_logins = 0
    staff.locked_until = None
    revoked = 0
    if revoke_tokens:
        for token in staff.tokens:
            if token.revoked_at is None:
                token.revoked_at = now
                revoked += 1
    session.flush()
    return PasswordReset(email=staff.email, password=password, revoked_tokens=revoked)
