"""Prompt delivery: the mails a request queued go out right after its response is sent.

Best effort only. The rows were committed with the change; if sending fails here (SMTP down),
the worker's `deliver_pending` retries them later. Nothing here can fail a request.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from functools import partial

import click
from flask import Flask, Response, current_app, has_app_context

from scheduler.cli import parse_now
from scheduler.extensions import db
from scheduler.services import mail
from scheduler.web.common import now

SENDER_KEY = "chairside_mail_sender"


def sender(app: Flask) -> mail.MailSender:
    """The app's MailSender (SMTP when SMTP_HOST is set, else the log), built once."""
    cached = app.extensions.get(SENDER_KEY)
    if cached is None:
        cached = mail.sender_from_config(app.config)
        app.extensions[SENDER_KEY] = cached
    return cached


def init_app(app: Flask) -> None:
    app.cli.add_command(cli)

    @app.after_request
    def _deliver_queued_mail(response: Response) -> Response:
        ids = db.session.info.pop(mail.QUEUED_KEY, None)
        if ids and app.config.get("MAIL_DELIVER_AFTER_REQUEST", True):
            # After the response went out (WSGI close): the patient never waits for SMTP.
            response.call_on_close(partial(_deliver, app, tuple(ids), now()))
        return response


def _deliver(app: Flask, ids: Sequence[int], when: dt.datetime) -> None:
    try:
        if has_app_context() and current_app._get_current_object() is app:  # type: ignore[attr-defined]
            mail.deliver_pending(db.session(), sender(app), when, limit=len(ids), ids=ids)
        else:
            with app.app_context():
                mail.deliver_pending(db.session(), sender(app), when, limit=len(ids), ids=ids)
    except Exception:
        app.logger.exception("prompt mail delivery failed; the worker will retry")
        try:
            if has_app_context():
                db.session.rollback()
        except Exception:  # pragma: no cover - the session is beyond help; the worker retries
            pass


cli = click.Group("mail", help="The outgoing mail outbox.")


@cli.command("deliver")
@click.option("--now", "now_text", default=None, help="ISO 8601 instant (operators, tests).")
@click.option("--limit", default=500, show_default=True)
def deliver_command(now_text: str | None, limit: int) -> None:
    """Send the mails that are due now (the worker does this on every poll)."""
    when = parse_now(now_text) if now_text else now()
    sent, failed = mail.deliver_pending(db.session(), sender(current_app), when, limit=limit)
    click.echo(f"sent {sent}, failed {failed}")
