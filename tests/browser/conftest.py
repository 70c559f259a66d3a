"""Browser fixtures: the app served on loopback, driven by Debian's Chromium through Playwright."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import make_server

from config import TestConfig
from scheduler import create_app
from scheduler.extensions import db
from tests.conftest import IN_CI, FixedClock

ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / ".cache" / "node" / "node_modules" / "axe-core" / "axe.min.js"

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        if IN_CI:
            pytest.fail(f"Chromium is required under CI and is missing at {CHROMIUM}")
        pytest.skip(f"Chromium not installed at {CHROMIUM} (make test-setup installs it as root)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        yield instance
        instance.close()


@pytest.fixture(scope="module")
def axe_source() -> str:
    """axe-core's script, to inject into pages (installed by scripts/install-test-tools.sh)."""
    if not AXE.exists():
        reason = f"{AXE} missing (scripts/install-test-tools.sh installs axe-core)"
        if IN_CI:
            pytest.fail(f"axe-core is required under CI: {reason}")
        pytest.skip(reason)
    return AXE.read_text()


@pytest.fixture
def db_url(sqlite_url: str) -> str:
    """Browser tests run against SQLite: the page flows are the same on both databases."""
    from tests.conftest import _clean

    _clean(sqlite_url)
    return sqlite_url


class LiveServer:
    def __init__(self, app: Flask) -> None:
        self.app = app
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.thread.join(5)


@pytest.fixture
def live_app(db_url: str, clock: FixedClock, app_config: dict[str, Any]) -> Iterator[Flask]:
    """A separate app for the live server (its own sessions), sharing the test's database."""
    config = TestConfig(db_url, **app_config)
    config.WTF_CSRF_ENABLED = True
    application = create_app(config)
    yield application
    with application.app_context():
        db.engine.dispose()


@pytest.fixture
def live_server(live_app: Flask) -> Iterator[LiveServer]:
    with LiveServer(live_app) as server:
        yield server


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A phone-sized page (360 x 740) in a fresh context."""
    context = browser.new_context(viewport={"width": 360, "height": 740})
    pg = context.new_page()
    pg.set_default_timeout(10_000)
    yield pg
    context.close()
