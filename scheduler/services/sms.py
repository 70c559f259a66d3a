"""SMS adapters: the SmsSender protocol, Twilio (the real client) and a log-only sender.

Neither implementation ever logs a phone number or a message body, and the twilio client's own
request logging (which prints URLs and form fields) is switched off.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import requests
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

log = logging.getLogger(__name__)

TWILIO_API = "https://api.twilio.com"

# Errors about the recipient: retrying cannot help, so they are recorded and not retried.
PERMANENT_CODES = frozenset(
    {
        21211,  # invalid 'To' number
        21408,  # region not enabled
        21610,  # recipient unsubscribed (replied STOP)
        21612,  # cannot route to this number
        21614,  # not a mobile number
        30003,  # unreachable handset
        30004,  # message blocked
        30005,  # unknown destination
        30006,  # landline or unreachable carrier
    }
)


@dataclass(frozen=True)
class SendResult:
    sid: str
    status: str  # the provider's status: queued, accepted, sent, ... ("logged" for the log sender)


class SmsError(Exception):
    """Sending failed. `permanent` errors are recorded and never retried."""

    def __init__(self, code: str, message: str, *, permanent: bool) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.permanent = permanent


class SmsSender(Protocol):
    def send(self, to: str, body: str, *, status_callback: str | None = None) -> SendResult: ...


class LogSmsSender:
    """Without Twilio credentials: note that an SMS would have gone out (no number, no text)."""

    def send(self, to: str, body: str, *, status_callback: str | None = None) -> SendResult:
        sid = "LOG" + secrets.token_hex(16)
        log.info("SMS not sent (no Twilio credentials): %d characters, id %s", len(body), sid)
        return SendResult(sid=sid, status="logged")


class BaseUrlHttpClient(TwilioHttpClient):  # type: ignore[misc]
    """The twilio client's HTTP layer, pointed at another base URL and without request logging."""

    def __init__(self, base_url: str = TWILIO_API, *, timeout: float = 10.0) -> None:
        super().__init__(timeout=timeout, logger=_quiet_logger())
        self.base_url = base_url.rstrip("/")

    def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        if self.base_url != TWILIO_API and url.startswith(TWILIO_API):
            url = self.base_url + url[len(TWILIO_API) :]
        return super().request(method, url, params, data, headers, auth, timeout, allow_redirects)

    # The stock versions log URLs, query parameters and headers: never with patient data.
    def log_request(self, kwargs: dict[str, Any]) -> None:
        return None

    def log_response(self, status_code: int, response: Any) -> None:
        return None


def _quiet_logger() -> logging.Logger:
    logger = logging.getLogger("twilio.http_client")
    logger.setLevel(logging.WARNING)
    logger.propagate = False
    return logger


class TwilioSmsSender:
    """Sends through Twilio's Messages API with the official client."""

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        from_number: str = "",
        messaging_service_sid: str = "",
        api_base_url: str = TWILIO_API,
        timeout: float = 10.0,
    ) -> None:
        if not (from_number or messaging_service_sid):
            raise ValueError("set TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID")
        self.from_number = from_number
        self.messaging_service_sid = messaging_service_sid
        self.client = Client(
            account_sid, auth_token, http_client=BaseUrlHttpClient(api_base_url, timeout=timeout)
        )

    def send(self, to: str, body: str, *, status_callback: str | None = None) -> SendResult:
        kwargs: dict[str, Any] = {"to": to, "body": body}
        if self.messaging_service_sid:
            kwargs["messaging_service_sid"] = self.messaging_service_sid
        else:
            kwargs["from_"] = self.from_number
        if status_callback:
            kwargs["status_callback"] = status_callback
        try:
            message = self.client.messages.create(**kwargs)
        except TwilioRestException as exc:
            raise classify(exc.status, exc.code) from None
        except TwilioException as exc:
            # e.g. an RFC 9457 error body (TwilioServiceException): treat as temporary.
            raise SmsError("provider", type(exc).__name__, permanent=False) from None
        except requests.RequestException as exc:
            # Timeout or connection trouble; the message may or may not have been accepted.
            raise SmsError("network", type(exc).__name__, permanent=False) from None
        return SendResult(sid=str(message.sid), status=str(message.status or "queued"))


def classify(http_status: int, code: int | None) -> SmsError:
    """Map a Twilio error to retry-or-not: 429, 5xx and auth trouble retry, the rest do not."""
    code_text = str(code if code is not None else http_status)
    if code in PERMANENT_CODES:
        return SmsError(code_text, "rejected by the provider", permanent=True)
    if http_status == 429 or http_status >= 500 or http_status in (401, 403):
        # Auth trouble is a configuration problem: retry with backoff until someone fixes it.
        return SmsError(code_text, f"HTTP {http_status}", permanent=False)
    return SmsError(code_text, f"HTTP {http_status}", permanent=True)


def sender_from_config(config: Mapping[str, Any]) -> SmsSender:
    """Twilio when credentials and a sender are configured, else the log sender."""
    sid = config.get("TWILIO_ACCOUNT_SID") or ""
    token = config.get("TWILIO_AUTH_TOKEN") or ""
    from_number = config.get("TWILIO_FROM_NUMBER") or ""
    service_sid = config.get("TWILIO_MESSAGING_SERVICE_SID") or ""
    if sid and token and (from_number or service_sid):
        return TwilioSmsSender(
            sid,
            token,
            from_number=from_number,
            messaging_service_sid=service_sid,
            api_base_url=config.get("TWILIO_API_BASE_URL") or TWILIO_API,
            timeout=float(config.get("TWILIO_TIMEOUT_SECONDS") or 10.0),
        )
    if sid or token:
        log.warning(
            "Twilio is partly configured (need TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and "
            "TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID): SMS go to the log"
        )
    return LogSmsSender()
