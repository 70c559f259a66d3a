"""A local HTTP server that speaks Twilio's Messages API and records every request.

Used by tests (in a thread) and by the benchmark (`python -m tests.twilio_server`, own process).
It checks Basic auth, answers `201` with a MessageInstance-shaped JSON body, and can be told to
answer errors for a number (429, 5xx, 21211, 21610), or to hold requests after the n-th one so
a test can kill a worker while a request is in flight.

Control endpoints (for other processes): GET /_test/requests, GET /_test/count, POST /_test/reset.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import json
import secrets
import threading
from collections import deque
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

ACCOUNT_SID = "AC" + "0" * 32
AUTH_TOKEN = "test-auth-token-0123456789abcdef"
FROM_NUMBER = "+14155550000"

ERRORS: dict[str, tuple[int, int, str]] = {
    "429": (429, 20429, "Too Many Requests"),
    "500": (500, 20500, "Internal Server Error"),
    "503": (503, 20503, "Service Unavailable"),
    "21211": (400, 21211, "The 'To' number is not a valid phone number."),
    "21610": (400, 21610, "Attempt to send to unsubscribed recipient"),
}


@dataclass
class Recorded:
    path: str
    form: dict[str, str]
    sid: str | None
    answer: int

    @property
    def to(self) -> str:
        return self.form.get("To", "")

    @property
    def body(self) -> str:
        return self.form.get("Body", "")


@dataclass
class _State:
    requests: list[Recorded] = field(default_factory=list)
    # per number: queued answers ("ok" or an ERRORS key), consumed one per request
    script: dict[str, deque[str]] = field(default_factory=dict)
    hold_after: int | None = None  # requests after this many successes wait for `release`
    held: int = 0
    accepted: int = 0


class TwilioServer:
    """Run with `with TwilioServer() as server:`; `server.base_url` goes to TWILIO_API_BASE_URL."""

    def __init__(self, port: int = 0, account_sid: str = ACCOUNT_SID, token: str = AUTH_TOKEN):
        self.account_sid = account_sid
        self.token = token
        self.state = _State()
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.held_changed = threading.Condition()
        self.httpd = _QuietServer(("127.0.0.1", port), _handler(self))
        self.thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def config(self) -> dict[str, str]:
        """The app config (or environment) that sends SMS here."""
        return {
            "TWILIO_ACCOUNT_SID": self.account_sid,
            "TWILIO_AUTH_TOKEN": self.token,
            "TWILIO_FROM_NUMBER": FROM_NUMBER,
            "TWILIO_API_BASE_URL": self.base_url,
        }

    def start(self) -> TwilioServer:
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> TwilioServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what tests use --------------------------------------------------------------------------

    @property
    def requests(self) -> list[Recorded]:
        with self.lock:
            return list(self.state.requests)

    @property
    def messages(self) -> list[Recorded]:
        """Requests that were accepted (answered 201)."""
        return [r for r in self.requests if r.answer == 201]

    def script(self, number: str, *answers: str) -> None:
        """The next requests to `number` get these answers in turn ("ok", "429", "21211", ...)."""
        with self.lock:
            self.state.script.setdefault(number, deque()).extend(answers)

    def always(self, number: str, answer: str, times: int = 100) -> None:
        self.script(number, *([answer] * times))

    def hold_after(self, n: int) -> None:
        """Accept n messages, then keep every further request waiting until `release` is set."""
        with self.lock:
            self.state.hold_after = n

    def wait_held(self, n: int, timeout: float = 60.0) -> bool:
        """Wait until n requests are being held (see hold_after)."""
        with self.held_changed:
            return self.held_changed.wait_for(lambda: self.state.held >= n, timeout)

    def reset(self) -> None:
        with self.lock:
            self.state = _State()
        self.release.clear()

    # --- request handling ------------------------------------------------------------------------

    def _answer(
        self, path: str, form: dict[str, str], auth: str | None
    ) -> tuple[int, dict[str, Any]]:
        expected = "Basic " + base64.b64encode(f"{self.account_sid}:{self.token}".encode()).decode()
        if auth != expected:
            return 401, {"code": 20003, "message": "Authenticate", "status": 401}
        if path != f"/2010-04-01/Accounts/{self.account_sid}/Messages.json":
            return 404, {"code": 20404, "message": "Not found", "status": 404}
        to = form.get("To", "")
        sid = "SM" + secrets.token_hex(16)
        with self.lock:
            queued = self.state.script.get(to)
            answer = queued.popleft() if queued else "ok"
            hold = (
                self.state.hold_after is not None and self.state.accepted >= self.state.hold_after
            )
            status = 201 if answer == "ok" else ERRORS[answer][0]
            # Recorded first, answered after any hold: a held request is one Twilio has accepted
            # but whose sender has not heard back yet (the in-flight case). Decided and counted
            # under one lock, so concurrent senders never get more than `hold_after` answers.
            self._record_locked(path, form, sid if answer == "ok" else None, status)
        if answer != "ok":
            sid = None
        if hold:
            with self.held_changed:
                self.state.held += 1
                self.held_changed.notify_all()
            self.release.wait()
        if answer != "ok":
            status, code, message = ERRORS[answer]
            return status, {"code": code, "message": message, "more_info": "", "status": status}
        return 201, {
            "sid": sid,
            "account_sid": self.account_sid,
            "to": to,
            "from": form.get("From"),
            "messaging_service_sid": form.get("MessagingServiceSid"),
            "body": form.get("Body", ""),
            "status": "queued",
            "num_segments": "1",
            "direction": "outbound-api",
            "api_version": "2010-04-01",
            "date_created": "Thu, 26 Nov 2026 08:00:00 +0000",
            "date_updated": "Thu, 26 Nov 2026 08:00:00 +0000",
            "date_sent": None,
            "price": None,
            "error_code": None,
            "error_message": None,
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json",
        }

    def _record_locked(self, path: str, form: dict[str, str], sid: str | None, answer: int) -> None:
        """Record a request; the caller holds `self.lock`."""
        self.state.requests.append(Recorded(path, form, sid, answer))
        self.state.accepted += answer == 201


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client killed mid-request (the SIGKILL test) is expected; anything else is not.
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _handler(server: TwilioServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # else headers and body wait on a delayed ACK (40 ms)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return None  # quiet: bodies carry phone numbers

        def _send(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802
            path = urlparse(self.path).path
            if path == "/_test/requests":
                self._send(200, [asdict(r) for r in server.requests])
            elif path == "/_test/count":
                state = server.state
                self._send(200, {"count": len(state.requests), "accepted": state.accepted})
            else:
                self._send(404, {"code": 20404, "message": "Not found", "status": 404})

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            data = self.rfile.read(length) if length else b""
            if len(data) < length:  # the client died mid-request: nothing was sent
                self.close_connection = True
                return
            raw = data.decode()
            path = urlparse(self.path).path
            if path == "/_test/reset":
                server.reset()
                self._send(200, {})
                return
            form = {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}
            status, body = server._answer(path, form, self.headers.get("Authorization"))
            self._send(status, body)

    return Handler


# --- data for the multi-worker tests and the benchmark ---------------------------------------------


def daytime_zone(now: dt.datetime) -> str:
    """An Etc/GMT zone where `now` is around noon (outside quiet hours), for real-time runs."""
    k = 12 - now.astimezone(dt.UTC).hour
    if k < -12:
        k += 24
    if k > 14:
        k -= 24
    return "Etc/UTC" if k == 0 else f"Etc/GMT{'-' if k > 0 else '+'}{abs(k)}"


def seed_due_reminders(
    session: Any, n: int, due_at: dt.datetime, *, timezone: str = "America/Los_Angeles"
) -> list[int]:
    """n patients with one visit and one reminder each, due at `due_at`; bulk inserts, flushed.
    Returns the reminder ids."""
    from sqlalchemy import insert

    from scheduler.models import Appointment, Location, Patient, Reminder, Resource, Service

    tag = secrets.token_hex(3)
    location = Location(slug=f"bulk-{tag}", name="Bulk Street", timezone=timezone, phone="")
    chair = Resource(kind="chair", name="Chair 1", position=1)
    location.resources.append(chair)
    service = Service(
        slug=f"bulk-{tag}",
        name="Bulk infusion",
        kind="infusion",
        resource_kind="chair",
        duration_minutes=40,
        locations=[location],
    )
    session.add_all([location, service])
    session.flush()
    patient_ids = list(
        session.scalars(
            insert(Patient).returning(Patient.id, sort_by_parameter_order=True),
            [
                {
                    "name": f"Bulk Patient {i}",
                    "phone": f"+1628{2000000 + i:07d}",
                    "email": f"bulk{i}-{tag}@example.com",
                    "match_key": f"bulk patient {i} {tag}|",  # unique per seeding
                    "sms_consent": True,
                }
                for i in range(n)
            ],
        )
    )
    first = due_at + dt.timedelta(days=1)
    starts = [first + dt.timedelta(hours=i) for i in range(n)]
    ten = dt.timedelta(minutes=10)
    appointment_ids = list(
        session.scalars(
            insert(Appointment).returning(Appointment.id, sort_by_parameter_order=True),
            [
                {
                    "location_id": location.id,
                    "resource_id": chair.id,
                    "service_id": service.id,
                    "patient_id": patient_ids[i],
                    "start_at": start,
                    "end_at": start + 4 * ten,
                    "occupied_start": start - ten,
                    "occupied_end": start + 5 * ten,
                    "duration_minutes": 40,
                    "prep_minutes": 10,
                    "recovery_minutes": 10,
                    "manage_token": f"bulk{tag}{i:08d}".ljust(43, "x"),
                    "ics_uid": f"bulk-{tag}-{i}@chairside",
                }
                for i, start in enumerate(starts)
            ],
        )
    )
    return list(
        session.scalars(
            insert(Reminder).returning(Reminder.id, sort_by_parameter_order=True),
            [
                {
                    "appointment_id": appointment_ids[i],
                    "appointment_start_at": start,
                    "offset_minutes": 2880,
                    "due_at": due_at,
                    "next_attempt_at": due_at,
                    "status": "pending",
                }
                for i, start in enumerate(starts)
            ],
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server = TwilioServer(args.port)
    print(server.base_url, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.httpd.serve_forever()


if __name__ == "__main__":
    main()
