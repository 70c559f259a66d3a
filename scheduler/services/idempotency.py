"""Idempotency keys: the first response to a keyed request is kept and replayed."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

from sqlalchemy import select, text
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
    body: str,
    now: dt.datetime,
) -> None:
    session.add(
        IdempotencyRecord(
            scope=scope,
            key=key,
            request_hash=digest,
            status_code=status_code,
            response_body=body,
            created_at=now,
        )
    )
    session.flush()


def lock(session: Session, scope: str, key: str) -> None:
    """Serialize requests that carry the same key, until the holder's transaction ends.

    PostgreSQL: a transaction-scoped advisory lock on the key, so a twin request waits and then
    finds the stored response. SQLite: every transaction already holds the write lock.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"), {"k": f"{scope}:{key}"}
        )
