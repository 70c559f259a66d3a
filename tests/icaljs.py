"""Cross-check ICS with Mozilla's ical.js (node): skipped with a reason if missing, failed under CI."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IN_CI

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(__file__).resolve().parent / "icaljs_parse.js"
ICALJS = ROOT / ".cache" / "node" / "node_modules" / "ical.js" / "dist" / "ical.js"


def missing() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed: ical.js cross-checks need it (scripts/install-test-tools.sh)"
    if not ICALJS.exists():
        return f"ical.js is not installed at {ICALJS.parent.parent} (run scripts/install-test-tools.sh)"
    return None


def require() -> None:
    reason = missing()
    if reason:
        if IN_CI:
            pytest.fail(f"ical.js is required under CI: {reason}")
        pytest.skip(reason)


def parse(documents: Sequence[bytes]) -> list[dict[str, Any]]:
    """What ical.js reads from each document: method, VTIMEZONE ids, events (UTC start/end...)."""
    require()
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, doc in enumerate(documents):
            path = Path(tmp) / f"{i}.ics"
            path.write_bytes(doc)
            paths.append(str(path))
        done = subprocess.run(
            ["node", str(SCRIPT), *paths], capture_output=True, text=True, check=False
        )
    assert done.returncode == 0, f"ical.js could not parse: {done.stderr}"
    result: list[dict[str, Any]] = json.loads(done.stdout)
    return result


@pytest.fixture
def every_ics_checked(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every ICS the builder produces during the test is read back by ical.js at teardown.

    Its event start instants must equal the appointments' (as they were when it was built).
    """
    from scheduler.services import invites

    produced: list[tuple[bytes, list[dt.datetime]]] = []
    real_render, real_feed = invites.render_ics, invites.feed_calendar

    def render(data: Any) -> bytes:
        ics = real_render(data)
        produced.append((ics, [data.start]))
        return ics

    def feed(appointments: Any, **kwargs: Any) -> bytes:
        ics = real_feed(appointments, **kwargs)
        produced.append((ics, [a.start_at for a in appointments]))
        return ics

    monkeypatch.setattr(invites, "render_ics", render)
    monkeypatch.setattr(invites, "feed_calendar", feed)
    yield
    if not produced:
        return
    parsed = parse([ics for ics, _ in produced])
    for doc, (ics, starts) in zip(parsed, produced, strict=True):
        got = sorted(dt.datetime.fromisoformat(e["start"]) for e in doc["events"])
        assert got == sorted(starts), ics.decode()
