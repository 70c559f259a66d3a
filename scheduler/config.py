"""Configuration: every setting comes from the environment, with embedded defaults."""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

from scheduler.paths import SOURCE_ROOT, in_source_tree

ROOT = SOURCE_ROOT
# The instance folder (SQLite file, generated secret key): CHAIRSIDE_INSTANCE, else `instance/`
# in a source checkout, else `<prefix>/var/chairside-instance` for an installed package (Flask's
# convention), never relative to the working directory.
INSTANCE = Path(
    os.environ.get("CHAIRSIDE_INSTANCE")
    or (ROOT / "instance" if in_source_tree() else Path(sys.prefix) / "var" / "chairside-instance")
)


def _flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _secret_key() -> str:
    """SECRET_KEY from the environment, else one generated once and kept in the instance folder."""
    env = os.environ.get("SECRET_KEY")
    if env:
        return env
    INSTANCE.mkdir(parents=True, exist_ok=True)
    path = INSTANCE / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


class Config:
    """Production and embedded settings, read from the environment when instantiated."""

    def __init__(self) -> None:
        INSTANCE.mkdir(parents=True, exist_ok=True)
        self.SQLALCHEMY_DATABASE_URI = os.environ.get(
            "DATABASE_URL", f"sqlite:///{INSTANCE / 'chairside.sqlite3'}"
        )
        self.SECRET_KEY = _secret_key()
        self.PUBLIC_BASE_URL = os.environ.get("PUBLIC_BASE_URL", "http://localhost:5000").rstrip(
            "/"
        )
        self.CLINIC_NAME = os.environ.get("CLINIC_NAME", "Chairside Clinic")
        # The patient pages' footer number where a page has no location (or it has no phone).
        self.CLINIC_PHONE = os.environ.get("CLINIC_PHONE", "").strip()
        self.TWILIO_ACCOUNT_SID = os.environ.get("TWILIO_ACCOUNT_SID", "")
        self.TWILIO_AUTH_TOKEN = os.environ.get("TWILIO_AUTH_TOKEN", "")
        self.TWILIO_FROM_NUMBER = os.environ.get("TWILIO_FROM_NUMBER", "")
        self.TWILIO_MESSAGING_SERVICE_SID = os.environ.get("TWILIO_MESSAGING_SERVICE_SID", "")
        self.TWILIO_API_BASE_URL = os.environ.get("TWILIO_API_BASE_URL", "https://api.twilio.com")
        self.SMTP_HOST = os.environ.get("SMTP_HOST", "")
        self.SMTP_PORT = int(os.environ.get("SMTP_PORT", "587") or 587)
        self.SMTP_USERNAME = os.environ.get("SMTP_USERNAME", "")
        self.SMTP_PASSWORD = os.environ.get("SMTP_PASSWORD", "")
        self.SMTP_STARTTLS = _flag("SMTP_STARTTLS", True)
        self.MAIL_FROM = os.environ.get("MAIL_FROM", "appointments@chairside.example")
        self.REMINDER_OFFSETS = os.environ.get("REMINDER_OFFSETS", "48h,2h")
        self.PATIENT_MIN_AGE_YEARS = int(os.environ.get("PATIENT_MIN_AGE_YEARS", "18") or 18)
        self.SCHEDULER_EMBEDDED_WORKER = _flag("SCHEDULER_EMBEDDED_WORKER", True)
        self.REMINDER_POLL_SECONDS = int(os.environ.get("REMINDER_POLL_SECONDS", "30"))
        self.REMINDER_BATCH_SIZE = int(os.environ.get("REMINDER_BATCH_SIZE", "100"))
        self.REMINDER_LEASE_SECONDS = int(os.environ.get("REMINDER_LEASE_SECONDS", "300"))
        self.REMINDER_RECHECK_SECONDS = float(os.environ.get("REMINDER_RECHECK_SECONDS", "1"))
        self.REMINDER_SEND_CONCURRENCY = int(os.environ.get("REMINDER_SEND_CONCURRENCY", "4"))
        self.WAITLIST_OFFER_MINUTES = int(os.environ.get("WAITLIST_OFFER_MINUTES", "30") or 30)
        self.WAITLIST_BATCH_SIZE = int(os.environ.get("WAITLIST_BATCH_SIZE", "3") or 3)
        self.TWILIO_TIMEOUT_SECONDS = float(os.environ.get("TWILIO_TIMEOUT_SECONDS", "10"))
        self.SMTP_TIMEOUT = float(os.environ.get("SMTP_TIMEOUT", "10"))
        # Send a request's queued mail right after its response (the worker retries failures).
        # By default only where the web process is the worker anyway (the embedded setup): a
        # scaled deployment leaves delivery to its reminder workers and keeps web workers free.
        self.MAIL_DELIVER_AFTER_REQUEST = _flag(
            "MAIL_DELIVER_AFTER_REQUEST", self.SCHEDULER_EMBEDDED_WORKER
        )
        self.STAFF_LOCKOUT_ATTEMPTS = int(os.environ.get("STAFF_LOCKOUT_ATTEMPTS", "5"))
        self.STAFF_LOCKOUT_MINUTES = int(os.environ.get("STAFF_LOCKOUT_MINUTES", "15"))
        for name, default in (
            ("PATIENT_TOKEN_RATELIMIT", "30 per minute;300 per hour"),
            ("PATIENT_BOOKING_RATELIMIT", "10 per minute;50 per hour"),
            ("PATIENT_BROWSE_RATELIMIT", "120 per minute"),
            ("API_BOOKING_RATELIMIT", "10 per minute;50 per hour"),
            ("API_READ_RATELIMIT", "120 per minute"),
            ("API_STAFF_RATELIMIT", "600 per minute"),
        ):
            setattr(self, name, os.environ.get(name, default))
        self.AVAILABILITY_MAX_DAYS = int(os.environ.get("AVAILABILITY_MAX_DAYS", "62"))
        # Request bodies over this many bytes are refused with 413 before they are read.
        self.MAX_CONTENT_LENGTH = int(os.environ.get("MAX_CONTENT_LENGTH", "") or 1024 * 1024)
        self.RATELIMIT_ENABLED = _flag("RATELIMIT_ENABLED", True)
        # memory:// counts per process; several web processes share limits through Redis
        # (redis://host:6379/0).
        self.RATELIMIT_STORAGE_URI = os.environ.get("RATELIMIT_STORAGE_URI", "memory://")
        # Proxies in front of the app whose X-Forwarded-For is trusted for the client's address
        # (rate limits count per address): 1 behind one reverse proxy, 0 when exposed directly.
        self.TRUSTED_PROXY_HOPS = int(os.environ.get("TRUSTED_PROXY_HOPS", "0"))
        # If that Redis is unreachable, count in memory meanwhile rather than refuse requests.
        self.RATELIMIT_IN_MEMORY_FALLBACK_ENABLED = _flag("RATELIMIT_IN_MEMORY_FALLBACK", True)
        # With the database unreachable: 503 with this Retry-After, and at most one log line per
        # failure kind per DB_OUTAGE_LOG_SECONDS.
        self.DB_UNAVAILABLE_RETRY_AFTER = int(os.environ.get("DB_UNAVAILABLE_RETRY_AFTER", "5"))
        self.DB_OUTAGE_LOG_SECONDS = float(os.environ.get("DB_OUTAGE_LOG_SECONDS", "60"))
        self.WTF_CSRF_TIME_LIMIT = None
        self.SESSION_COOKIE_HTTPONLY = True
        self.SESSION_COOKIE_SAMESITE = "Lax"
        self.SESSION_COOKIE_SECURE = self.PUBLIC_BASE_URL.startswith("https://")
        self.REMEMBER_COOKIE_HTTPONLY = True
        self.REMEMBER_COOKIE_SAMESITE = "Lax"
        self.REMEMBER_COOKIE_SECURE = self.SESSION_COOKIE_SECURE
        # hide_parameters: database errors and logs never carry patient data (phones, e-mails).
        self.SQLALCHEMY_ENGINE_OPTIONS: dict[str, object] = {
            "pool_pre_ping": True,
            "hide_parameters": True,
        }
        self.ARGON2_PARAMS: dict[str, int] = {}
        self.TESTING = False


class TestConfig(Config):
    """Settings for the test suite: no embedded worker, cheap password hashing, no rate limits."""

    __test__ = False  # not a pytest test class

    def __init__(self, database_url: str | None = None, **overrides: object) -> None:
        super().__init__()
        if database_url:
            self.SQLALCHEMY_DATABASE_URI = database_url
        self.TESTING = True
        self.SECRET_KEY = "test-secret-key"
        self.SCHEDULER_EMBEDDED_WORKER = False
        self.MAIL_DELIVER_AFTER_REQUEST = True  # tests see the prompt delivery path
        self.RATELIMIT_ENABLED = False
        self.ARGON2_PARAMS = {"time_cost": 1, "memory_cost": 1024, "parallelism": 1}
        self.TWILIO_ACCOUNT_SID = ""
        self.TWILIO_AUTH_TOKEN = ""
        self.SMTP_HOST = ""
        for key, value in overrides.items():
            setattr(self, key, value)
