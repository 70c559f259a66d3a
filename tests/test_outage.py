"""A database outage under load: 503 with Retry-After (JSON on the API, a page elsewhere), a
bounded log, and recovery without a restart. PostgreSQL only: it stops a throwaway cluster of its
own while a real threaded server answers requests."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from flask_migrate import upgrade
from sqlalchemy import create_engine
from sqlalchemy.orm import Session
from werkzeug.serving import make_server

from config import TestConfig
from scheduler import create_app
from scheduler.extensions import db
from tests.conftest import _needs_postgres
from tests.factories import make_location, make_service
from tests.pgcluster import Cluster

pytestmark = pytest.mark.postgres_only

RUN_SECONDS = 3.0
LOG_SECONDS = 60


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A cluster for this module alone: stopping it must not disturb the suite's shared one."""
    _needs_postgres()
    own = Cluster().start()
    try:
        yield own
    finally:
        if not own.running:
            own.resume()
        own.stop()


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def server(cluster: Cluster) -> Iterator[tuple[str, Records]]:
    url = cluster.create_database("outage")
    app = create_app(TestConfig(url, DB_OUTAGE_LOG_SECONDS=LOG_SECONDS))
    with app.app_context():
        upgrade()
        db.engine.dispose()
    engine = create_engine(url)
    with Session(engine) as session:
        make_service(session, [make_location(session, slug="sf")], slug="infusion")
        session.commit()
    engine.dispose()
    records = Records()
    app.logger.addHandler(records)
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}", records
    finally:
        httpd.shutdown()
        app.logger.removeHandler(records)
        with app.app_context():
            db.engine.dispose()


PATHS = ["/api/v1/locations", "/api/v1/locations/sf/services", "/", "/book/sf"]


def test_an_outage_answers_503_logs_little_and_recovers_without_restart(cluster, server):
    base, records = server
    for path in PATHS:
        assert requests.get(base + path, timeout=10).status_code == 200, path
    cluster.pause()
    try:
        deadline = time.monotonic() + RUN_SECONDS

        def hammer(worker: int) -> list[requests.Response]:
            seen = []
            while time.monotonic() < deadline:
                seen.append(requests.get(base + PATHS[(worker + len(seen)) % 4], timeout=10))
            return seen

        with ThreadPoolExecutor(max_workers=4) as pool:
            responses = [r for batch in pool.map(hammer, range(4)) for r in batch]
    finally:
        cluster.resume()
    assert len(responses) >= 40  # a real load, not a handful
    assert {r.status_code for r in responses} == {503}
    for r in responses:
        assert int(r.headers["Retry-After"]) >= 1
        if r.url.startswith(base + "/api/"):
            assert r.json()["error"]["code"] == "unavailable"
        else:
            assert r.headers["Content-Type"].startswith("text/html")
            assert "Briefly unavailable" in r.text
    # One line per kind of failure, no tracebacks: a few lines for hundreds of refusals.
    errors = [x for x in records.records if x.levelno >= logging.WARNING]
    assert 1 <= len(errors) <= 3, [x.getMessage() for x in errors]
    assert all(x.exc_info is None for x in errors)
    # Back without a restart.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if requests.get(base + PATHS[0], timeout=10).status_code == 200:
            break
        time.sleep(0.2)
    for path in PATHS:
        assert requests.get(base + path, timeout=10).status_code == 200, path
