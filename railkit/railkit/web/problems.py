"""Every error as RFC 9457 problem details (`application/problem+json`).

Routes raise Problem for their own errors; werkzeug's HTTP errors and any
unhandled exception are turned into the same shape. A 500 never shows the
exception to the client, whatever the debug setting: the traceback goes to
the log, under the request id the client is given.
"""

import json
import logging
from http import HTTPStatus

from flask import Flask, Request, Response, g, request
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

MEDIA_TYPE = "application/problem+json"


class Problem(Exception):
    """Raise from a route to answer with a problem+json response.

    >>> raise Problem(422, "quantity must be positive", errors=[{"field": "quantity"}])
    """

    def __init__(self, status: int, detail: str, *, title: str | None = None, type: str = "about:blank", **extra):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title or HTTPStatus(status).phrase
        self.type = type
        self.extra = extra


def problem_response(
    status: int, detail: str, *, title: str | None = None, type: str = "about:blank", headers=None, **extra
) -> Response:
    """A problem+json response for the current request."""
    body = {
        "type": type,
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "instance": request.path,
        "request_id": g.get("request_id"),
        **extra,
    }
    response = Response(json.dumps(body), status=status, mimetype=MEDIA_TYPE)
    for name, value in (headers or {}).items():
        if name.lower() not in ("content-type", "content-length"):
            response.headers[name] = value
    return response


class ApiRequest(Request):
    """Flask's request, saying what is wrong with a JSON body instead of a bare 400."""

    def on_json_loading_failed(self, error: ValueError | None):
        if error is None:
            raise Problem(415, f"Send the body as application/json, not {self.mimetype or 'no content type'}")
        raise Problem(400, f"The body is not valid JSON: {error}")


def handle_problem(error: Problem) -> Response:
    return problem_response(error.status, error.detail, title=error.title, type=error.type, **error.extra)


def handle_http_error(error: HTTPException) -> Response:
    # Keep what the error adds to its response, such as Allow on a 405.
    return problem_response(error.code, error.description, title=error.name, headers=error.get_response().headers)


def handle_unexpected(error: Exception) -> Response:
    log.exception("Unhandled %s while serving %s %s", type(error).__name__, request.method, request.path)
    return problem_response(500, "The server failed to complete the request. Quote the request_id when reporting it.")


def init_app(app: Flask) -> None:
    app.request_class = ApiRequest
    app.register_error_handler(Problem, handle_problem)
    app.register_error_handler(HTTPException, handle_http_error)
    app.register_error_handler(Exception, handle_unexpected)
