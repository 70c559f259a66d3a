"""The only module that knows APScheduler: one interval job that dispatches due reminders."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from flask import Flask


@dataclass
class DispatchResult:
    sent: int = 0
    skipped: int = 0
    failed: int = 0


def init_app(app: Flask) -> None:
    """Start the embedded reminder worker when configured (filled in by the reminders work)."""


def dispatch_once(app: Flask, now: dt.datetime) -> DispatchResult:
    """One pass over due reminders (filled in by the reminders work)."""
    return DispatchResult()


def run_forever(app: Flask) -> None:
    """The foreground worker (filled in by the reminders work)."""
    raise SystemExit("the reminder worker is not built yet")
