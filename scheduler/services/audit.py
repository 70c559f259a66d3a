"""The audit log: who did what to which appointment or setting, and when."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Collection, Mapping
from typing import Any

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session

from scheduler.models import AuditEntry, StaffUser

# Keys whose values never go into the log, whatever a caller passes.
SECRET_KEYS = frozenset({"password", "new_password", "token", "password_hash", "csrf_token"})


def record(
    session: Session,
    *,
    actor: StaffUser | None,
    action: str,
    at: dt.datetime,
    location_id: int | None = None,
    appointment_id: int | None = None,
    patient_id: int | None = None,
    target: str = "",
    details: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """Add one entry (flushes). `details` are plain values; secrets are dropped."""
    clean = {k: v for k, v in (details or {}).items() if k not in SECRET_KEYS}
    entry = AuditEntry(
        at=at,
        staff_id=actor.id if actor is not None else None,
        staff_name=actor.name if actor is not None else "system",
        location_id=location_id,
        appointment_id=appointment_id,
        patient_id=patient_id,
        action=action,
        target=target[:200],
        details=json.dumps(clean, default=str, sort_keys=True) if clean else "",
    )
    session.add(entry)
    session.flush()
    return entry


def details_of(entry: AuditEntry) -> dict[str, Any]:
    if not entry.details:
        return {}
    try:
        value = json.loads(entry.details)
    except ValueError:
        return {"details": entry.details}
    return value if isinstance(value, dict) else {"details": value}


def for_appointment(session: Session, appointment_id: int) -> list[AuditEntry]:
    return list(
        session.scalars(
            select(AuditEntry)
            .where(AuditEntry.appointment_id == appointment_id)
            .order_by(AuditEntry.at, AuditEntry.id)
        )
    )


def for_patient(
    session: Session, patient_id: int, appointment_ids: Collection[int]
) -> list[AuditEntry]:
    """Entries about the patient, and about those of their visits the reader may see."""
    condition: ColumnElement[bool] = AuditEntry.patient_id == patient_id
    if appointment_ids:
        condition = or_(condition, AuditEntry.appointment_id.in_(list(appointment_ids)))
    return list(
        session.scalars(
            select(AuditEntry).where(condition).order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
        )
    )


def recent(
    session: Session,
    *,
    location_ids: Collection[int] | None,
    limit: int = 200,
    include_global: bool = False,
) -> list[AuditEntry]:
    """The latest entries; `location_ids=None` means every location (admins)."""
    query = select(AuditEntry).order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(limit)
    if location_ids is not None:
        condition: ColumnElement[bool] = AuditEntry.location_id.in_(list(location_ids))
        if include_global:
            condition = or_(condition, AuditEntry.location_id.is_(None))
        query = query.where(condition)
    return list(session.scalars(query))
