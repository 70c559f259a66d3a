"""Every schema change is a migration: upgrade from empty matches the models on both databases."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import create_engine, inspect

from config import TestConfig
from scheduler import create_app
from scheduler.extensions import db
from scheduler.models import Base


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.sqlite3'}"
    cluster = request.getfixturevalue("pg_cluster")
    return cluster.create_database("migration_check")


def _relevant(diff) -> bool:
    # SQLite cannot hold the PostgreSQL-only exclusion constraints; nothing else may differ.
    text = repr(diff)
    return "ExcludeConstraint" not in text


def test_upgrade_from_empty_matches_the_models_and_downgrades(empty_url):
    app = create_app(TestConfig(empty_url))
    with app.app_context():
        upgrade()
        with db.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diffs = [d for d in compare_metadata(context, Base.metadata) if _relevant(d)]
        assert diffs == []
        downgrade(revision="base")
        db.engine.dispose()
    engine = create_engine(empty_url)
    left = set(inspect(engine).get_table_names()) - {"alembic_version"}
    engine.dispose()
    assert left == set()


def test_postgresql_has_the_exclusion_constraints(pg_cluster):
    url = pg_cluster.create_database("constraint_check")
    app = create_app(TestConfig(url))
    with app.app_context():
        upgrade()
        with db.engine.connect() as conn:
            names = set(
                conn.exec_driver_sql(
                    "SELECT conname FROM pg_constraint WHERE contype = 'x'"
                ).scalars()
            )
        db.engine.dispose()
    assert {"no_double_booking", "no_patient_overlap", "no_clinician_overlap"} <= names
