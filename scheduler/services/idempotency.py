"""Idempotency keys: the first response to a keyed request is kept and replayed."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler.models import IdempotencyRecord


def request_hash(payload: Any) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def find(session: Session, scope: str, key: str) -> IdempotencyRecord | None:
    return session.scalars(
        select(IdempotencyRecord).where(
            IdempotencyRecord.scope == scope, IdempotencyRecord.key == key
        )
    ).first()


def remember(
    session: Session,
    scope: str,
    key: str,
    digest: str,
    status_code: int,
    body: Any,
    now: dt.datetime,
) -> None:
    session.add(
        IdempotencyRecord(
            scope=scope,
            key=key,
            request_hash=digest,
            status_code=status_code,
            response_body=json.dumps(body),
            created_at=now,
        )
    )
    session.flush()
