"""Database plumbing: URL normalization and SQLite's connection rules."""

from __future__ import annotations

import sqlite3
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, make_transient_to_detached

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


def attach(session: Session, obj: T) -> T:
    """The session's persistent object for a row just read or written by a plain statement.

    `obj` carries every column of that row. No query is run: the object joins the session as
    that row, or its state is copied onto the session's own copy of the row. For hot paths
    that read or write with Core statements and still hand ORM objects to the rest.
    """
    make_transient_to_detached(obj)
    return session.merge(obj, load=False)
