"""Clinic-wide settings the services need, as plain values built from the app's config."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

_OFFSET = re.compile(r"^\s*(\d+)\s*([mhd])\s*$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def parse_offsets(text: str) -> tuple[dt.timedelta, ...]:
    """'48h,2h' -> (48 hours, 2 hours), largest first; raises ValueError on a bad item."""
    offsets = []
    for item in text.split(","):
        if not item.strip():
            continue
        match = _OFFSET.match(item)
        if not match:
            raise ValueError(f"bad reminder offset {item!r}: use e.g. 48h, 90m or 2d")
        offsets.append(dt.timedelta(**{_UNITS[match.group(2)]: int(match.group(1))}))
    return tuple(sorted(set(offsets), reverse=True))


@dataclass(frozen=True)
class ClinicSettings:
    clinic_name: str = "Chairside Clinic"
    public_base_url: str = "http://localhost:5000"
    mail_from: str = "appointments@chairside.example"
    reminder_offsets: tuple[dt.timedelta, ...] = field(
        default=(dt.timedelta(hours=48), dt.timedelta(hours=2))
    )
    patient_min_age_years: int = 18
    # The waitlist: how long an offered slot stays claimable, and how many waiting patients
    # are offered one freed slot at a time (the next ones after those offers expire).
    waitlist_offer_minutes: int = 30
    waitlist_batch: int = 3

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ClinicSettings:
        return cls(
            clinic_name=config.get("CLINIC_NAME", cls.clinic_name),
            public_base_url=str(config.get("PUBLIC_BASE_URL", cls.public_base_url)).rstrip("/"),
            mail_from=config.get("MAIL_FROM", cls.mail_from),
            reminder_offsets=parse_offsets(config.get("REMINDER_OFFSETS", "48h,2h")),
            patient_min_age_years=int(config.get("PATIENT_MIN_AGE_YEARS", 18)),
            waitlist_offer_minutes=max(1, int(config.get("WAITLIST_OFFER_MINUTES", 30))),
            waitlist_batch=max(1, int(config.get("WAITLIST_BATCH_SIZE", 3))),
        )

    def manage_url(self, token: str) -> str:
        return f"{self.public_base_url}/a/{token}"
