"""What a database error says, in one line: the driver's first line, or the error's type when it says nothing."""

from sqlalchemy import exc


def first_line(error: BaseException | None) -> str:
    """The first non-blank line of the driver's message (SQLAlchemy's wrapper unwrapped); never raises.

    psycopg's messages run to several lines (DETAIL, HINT, the server's
    context), and some are empty: a log line wants the first, or a name.
    """
    if isinstance(error, exc.DBAPIError) and error.orig is not None:
        error = error.orig
    if error is None:
        return "unknown error"
    try:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    except Exception:  # a driver's __str__ that fails must not hide the error it describes
        lines = []
    return lines[0] if lines else type(error).__name__
