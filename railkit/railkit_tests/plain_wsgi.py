"""A WSGI app that is not this project's Flask app: the cluster must serve any app."""


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"plain wsgi"]
