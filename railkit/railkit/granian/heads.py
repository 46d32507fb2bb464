"""The request head's limits under granian, as gunicorn's: a request line or a header too long is refused.

granian (hyper) refuses more than 100 headers (431) and a head larger than its
buffer (431, cluster's MAX_BUFFERED_HEAD), with an empty body. Within those,
it passes any length of request line and header; gunicorn's limits, and the
cluster's budget for all header lines (Railway's edge allows 32 KB), are
checked here before the app runs, and refused as problems.
"""

from ..cluster import limits


def head_problem(environ: dict) -> tuple[int, str] | None:
    """(status, detail) when the head is past gunicorn's limits, else None."""
    target = environ.get("RAW_URI") or (environ.get("PATH_INFO", "") + "?" + environ.get("QUERY_STRING", ""))
    # "METHOD target HTTP/1.1": the method, two spaces and the version around the target.
    line = len(environ.get("REQUEST_METHOD", "")) + len(target) + len(" HTTP/1.1") + 1
    if line > limits.LIMIT_REQUEST_LINE:
        return 414, f"The request line is {line} bytes; this service reads at most {limits.LIMIT_REQUEST_LINE}"
    total = 0
    for key, value in environ.items():
        if not key.startswith("HTTP_"):
            continue
        # "Name: value", as the header arrived (the name's length is the same with dashes).
        field = len(key) - 3 + len(value)
        if field > limits.LIMIT_REQUEST_FIELD_SIZE:
            name = key[5:].replace("_", "-").title()
            return 431, f"The header {name} is over {limits.LIMIT_REQUEST_FIELD_SIZE} bytes"
        total += field + 2  # and its CRLF
    if total > limits.LIMIT_REQUEST_HEADER_BYTES:
        return 431, f"The headers are over {limits.LIMIT_REQUEST_HEADER_BYTES} bytes in all"
    codings = tokens(environ.get("HTTP_TRANSFER_ENCODING", ""))
    if codings and codings != ["chunked"]:
        # RFC 9112 section 6.1, as the gunicorn cluster answers: hyper undid the chunks and left the coding on.
        return 501, f"Transfer-Encoding {', '.join(codings)} is not supported; send the body chunked or with a length"
    return None


def tokens(value: str) -> list[str]:
    """A comma-separated header's tokens, lowercased (`keep-alive, Close` -> ["keep-alive", "close"])."""
    return [token.strip().lower() for token in value.split(",") if token.strip()]
