"""Unhandled exceptions to Sentry, when SENTRY_DSN is set; sentry-sdk is not even imported otherwise.

Each event carries the release (RAILWAY_GIT_COMMIT_SHA), the environment
(RAILWAY_ENVIRONMENT_NAME) and the request id the client was given, and no
personal data (send_default_pii off). problems.py answers every unhandled
exception with a 500 and logs it with its traceback at ERROR: Sentry's logging
integration turns that line into the event.
"""

import os

from flask import Flask

from ..logs import request_id


def tag_request_id(event: dict, _hint: dict) -> dict:
    """Sentry's before_send: the id the client quotes, searchable as the `request_id` tag."""
    current = request_id.get()
    if current is not None:
        event.setdefault("tags", {})["request_id"] = current
    return event


def init_app(app: Flask) -> None:
    settings = app.config["SETTINGS"]
    if not settings.sentry_dsn:
        return
    import sentry_sdk
    from sentry_sdk.integrations.flask import FlaskIntegration

    sentry_sdk.init(
        dsn=settings.sentry_dsn,
        integrations=[FlaskIntegration()],
        release=os.environ.get("RAILWAY_GIT_COMMIT_SHA"),
        environment=os.environ.get("RAILWAY_ENVIRONMENT_NAME", "local"),
        send_default_pii=False,
        traces_sample_rate=settings.sentry_traces_sample_rate,
        before_send=tag_request_id,
    )
