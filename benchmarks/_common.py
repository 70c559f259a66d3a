"""Shared set-up for the benchmarks: a database (SQLite file or throwaway PostgreSQL) and timing."""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


@contextmanager
def database(kind: str) -> Iterator[str]:
    """A migrated, empty database URL of `kind` (sqlite or postgresql), removed afterwards."""
    from flask_migrate import upgrade

    from config import TestConfig
    from scheduler import create_app
    from scheduler.extensions import db

    if kind == "postgresql":
        from tests.pgcluster import Cluster

        cluster = Cluster().start()
        try:
            url = cluster.create_database("bench")
            app = create_app(TestConfig(url))
            with app.app_context():
                upgrade()
                db.engine.dispose()
            yield url
        finally:
            cluster.stop()
    else:
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{tmp}/bench.sqlite3"
            app = create_app(TestConfig(url))
            with app.app_context():
                upgrade()
                db.engine.dispose()
            yield url


def p50(fn: Callable[[], object], runs: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)
