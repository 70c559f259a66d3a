"""Database plumbing: URL normalization and SQLite's connection rules."""

from __future__ import annotations

import sqlite3
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

T = TypeVar("T")


def normalize_url(url: str) -> str:
    """Send plain postgres URLs to the psycopg 3 driver, the one we install."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


@event.listens_for(Engine, "connect")
def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    # We emit BEGIN ourselves (below); pysqlite's own transaction handling is off.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


@event.listens_for(Engine, "begin")
def _sqlite_begin_immediate(conn: Connection) -> None:
    # Every SQLite transaction takes the write lock up front: a booking's availability check and
    # its insert then run under one lock, and no deferred reader fails later on upgrade.
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def is_deadlock(exc: OperationalError) -> bool:
    """PostgreSQL aborted the transaction to break a lock cycle with a concurrent one (40P01)."""
    return getattr(exc.orig, "sqlstate", None) == "40P01"


def attach(session: Session, obj: T, *, written: bool = False) -> T:
    """The session's persistent object for a row just read or written by a plain statement.

    `obj` carries every column of that row; no query is run. When the session holds no object
    for the row, `obj` joins it as that row. When it does, that object is returned, as an ORM
    query would: unchanged for a row read (it may carry the caller's unflushed changes), or
    with the columns set as loaded when the statement `written` the row (an upsert).
    """
    make_transient_to_detached(obj)
    existing = session.identity_map.get(identity_key(instance=obj))
    if existing is None:
        session.add(obj)
        return obj
    if written:
        for column in _columns(obj):
            set_committed_value(existing, column, getattr(obj, column))
    return existing


def _columns(obj: object) -> list[str]:
    return [attr.key for attr in sa_inspect(obj).mapper.column_attrs]
