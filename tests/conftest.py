"""Shared fixtures: a fresh app per test on SQLite and on a throwaway PostgreSQL, a fixed clock."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from config import TestConfig
from scheduler import create_app
from scheduler.extensions import db
from tests.pgcluster import Cluster, binaries_missing
from tests.redisserver import RedisServer
from tests.redisserver import binary_missing as redis_missing
from tests.smtpinbox import Inbox

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
OUTPUT = Path(__file__).resolve().parent / "output"


class FixedClock:
    """The injectable clock: tests set `.now` and move it with `.advance`."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


# Monday 30 Nov 2026, 08:00 in San Francisco.
DEFAULT_NOW = dt.datetime(2026, 11, 30, 16, 0, tzinfo=dt.UTC)


def _needs_postgres() -> None:
    reason = binaries_missing()
    if reason:
        if IN_CI:
            pytest.fail(f"PostgreSQL is required under CI: {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    _needs_postgres()
    cluster = Cluster().start()
    try:
        yield cluster
    finally:
        cluster.stop()


def _migrate(url: str) -> None:
    from flask_migrate import upgrade

    app = create_app(TestConfig(url))
    with app.app_context():
        upgrade()
        db.engine.dispose()


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'chairside.sqlite3'}"
    _migrate(url)
    return url


@pytest.fixture(scope="session")
def postgresql_url(pg_cluster: Cluster) -> str:
    url = pg_cluster.create_database("chairside_test")
    _migrate(url)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def unmigrated_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new database with no schema, on each backend: migration tests upgrade it to an older
    revision, write rows as they were, then upgrade on. Named after the test module."""
    name = request.module.__name__.rsplit(".", 1)[-1]
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / name}.sqlite3"
    cluster: Cluster = request.getfixturevalue("pg_cluster")
    return cluster.create_database(name)


def _tables(url: str) -> list[str]:
    from scheduler.models import Base

    return [t.name for t in reversed(Base.metadata.sorted_tables)]


def _clean(url: str) -> None:
    """Empty every table a test wrote to (real commits happen in these tests, so no rolled-back
    transaction).

    Only the tables holding rows are emptied, and only the sequences a test drew from restart:
    a TRUNCATE of every table costs PostgreSQL about 160 ms even when they are empty, which
    over some 800 tests was two minutes of the suite. A probe of every table costs a few ms.
    """
    engine = create_engine(url, poolclass=NullPool)
    postgresql = engine.dialect.name == "postgresql"
    with engine.begin() as conn:
        if postgresql:
            listed = "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        else:
            listed = "SELECT name FROM sqlite_master WHERE type = 'table'"
        existing = set(conn.scalars(text(listed)))
        names = [n for n in _tables(url) if n in existing]
        probe = " UNION ALL ".join(f"SELECT '{n}' WHERE EXISTS (SELECT 1 FROM {n})" for n in names)
        dirty = set(conn.scalars(text(probe))) if names else set()
        for name in names:  # referencing tables first
            if name in dirty:
                conn.execute(text(f"DELETE FROM {name}"))
        if postgresql:
            used = conn.scalars(
                text(
                    "SELECT schemaname || '.' || sequencename FROM pg_sequences"
                    " WHERE last_value IS NOT NULL"
                )
            ).all()
            for sequence in used:
                conn.execute(text("SELECT setval(:s, 1, false)"), {"s": sequence})
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Each database test runs once per database."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    _clean(url)
    return url


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(DEFAULT_NOW)


@pytest.fixture
def app_config(db_url: str, clock: FixedClock) -> dict[str, Any]:
    """Overrides for the app's TestConfig; tests may add to it before asking for `app`."""
    return {"CLOCK": clock}


@pytest.fixture
def app(db_url: str, app_config: dict[str, Any]) -> Iterator[Flask]:
    application = create_app(TestConfig(db_url, **app_config))
    with application.app_context():
        yield application
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def session(app: Flask) -> Session:
    return db.session  # type: ignore[return-value]


@pytest.fixture
def client(app: Flask) -> Any:
    return app.test_client()


@pytest.fixture(scope="module")
def twilio_server() -> Iterator[Any]:
    """The local server that speaks Twilio's Messages API (tests/twilio_server.py), per module."""
    from tests.twilio_server import TwilioServer

    with TwilioServer() as server:
        yield server


@pytest.fixture
def twilio(twilio_server: Any) -> Iterator[Any]:
    """The Twilio server, emptied for this test; held requests are let go at the end."""
    twilio_server.reset()
    yield twilio_server
    twilio_server.release.set()  # never leave a request hanging


@pytest.fixture(scope="session")
def output_dir() -> Path:
    """Where tests write artefacts for reviewers (screenshots); not committed."""
    OUTPUT.mkdir(exist_ok=True)
    return OUTPUT


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    """A real SMTP server (aiosmtpd) on loopback that keeps what it receives."""
    box = Inbox().start()
    yield box
    box.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A real Redis on a free loopback port (rate limits shared between processes)."""
    reason = redis_missing()
    if reason:
        if IN_CI:
            pytest.fail(f"Redis is required under CI: {reason}")
        pytest.skip(reason)
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's Redis, emptied for this test."""
    redis_server.flush()
    return redis_server.url
