"""Log privacy: phone numbers and e-mail addresses never reach a log line or a logged traceback.

Code logs no patient data on purpose; this is the backstop for what it cannot control, such as a
database error whose detail repeats the offending row. Installed once per process as a log
record factory, so it covers every logger and handler (Flask's, gunicorn's, the worker's).
"""

from __future__ import annotations

import logging
import re
import traceback
from typing import Any

_PHONE = re.compile(r"\+\d{8,15}\b")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


def redact(text: str) -> str:
    return _EMAIL.sub("[email]", _PHONE.sub("[phone]", text))


FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def install() -> None:
    """Redact every log record; show the app's own INFO lines when nothing else set logging up.

    The embedded setup relies on those lines: without Twilio or SMTP, texts and e-mails are
    reported to the log (never their numbers, addresses or bodies).
    """
    logging.basicConfig(level=logging.WARNING, format=FORMAT)  # no-op when handlers exist
    app_logger = logging.getLogger("scheduler")
    if app_logger.level == logging.NOTSET:
        app_logger.setLevel(logging.INFO)
    previous = logging.getLogRecordFactory()
    if getattr(previous, "chairside_redacting", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a malformed call is logging's own problem to report
            return record
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
            text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            record.exc_text = redact(text)
        return record

    factory.chairside_redacting = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
