"""What every response carries, and which client the app believes it is talking to."""

from flask import Flask, Response, request
from werkzeug.middleware.proxy_fix import ProxyFix

# OWASP's headers for a JSON API.
API_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
}
HSTS = "max-age=63072000; includeSubDomains"


def add_security_headers(response: Response) -> Response:
    for name, value in API_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.is_secure:
        response.headers.setdefault("Strict-Transport-Security", HSTS)
    return response


def init_app(app: Flask) -> None:
    # Railway's edge is the one proxy in front of the app: trust exactly one
    # hop of X-Forwarded-For/-Proto/-Host, so a client cannot forge its IP.
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1)
    app.after_request(add_security_headers)
