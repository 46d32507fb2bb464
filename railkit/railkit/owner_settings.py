"""The owner's own environment variables, checked like the platform's: a bad value stops the start with one line.

`railkit.setting("PAGE_SIZE", int, default=50, minimum=1, maximum=500)` returns the variable's
value, parsed; a value that does not parse, is out of range or not among `choices`, or a required
variable that is missing, logs one JSON line naming the variable and exits with status 78, as the
platform's own variables do (settings.load_settings_or_exit). Called while the app loads, which
gunicorn's master does before it forks, it refuses the start before any worker runs.
"""

import os
from collections.abc import Iterable, Mapping

from .settings import FALSE_WORDS, TRUE_WORDS, SettingError, refuse_start

__all__ = ["setting"]

REQUIRED = object()
TYPES = (str, int, float, bool)


def setting(
    name: str,
    type: type = str,  # shadows the builtin: the word every reader expects, setting("PAGE_SIZE", int)
    *,
    default=REQUIRED,
    choices: Iterable | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    secret: bool = False,
    environ: Mapping[str, str] = os.environ,
):
    """The value of the environment variable `name` as `type` (str, int, float or bool), or `default` when unset.

    Without a default the variable is required. `secret=True` keeps the value out of the refusal.
    """
    if type not in TYPES:
        raise TypeError(f"setting {name!r}: type must be one of str, int, float, bool, not {type!r}")
    allowed = tuple(choices) if choices is not None else None
    raw = environ.get(name)
    try:
        if raw is None:
            if default is REQUIRED:
                raise SettingError(name, "", "is required", "set it in the service's variables")
            return default
        return _parse(name, raw, type, allowed, minimum, maximum)
    except SettingError as error:
        refuse_start(error, hide_value=secret)


def _parse(name: str, raw: str, kind: type, choices: tuple | None, minimum, maximum):
    value = raw.strip()
    if kind is bool:
        if value.lower() not in TRUE_WORDS | FALSE_WORDS:
            raise SettingError(name, raw, "is not a boolean", "use true or false (or 1/0, yes/no, on/off)")
        return value.lower() in TRUE_WORDS
    if kind is str:
        parsed = raw
        if not raw and choices is None:
            raise SettingError(name, raw, "is empty", "give it a value, or unset it")
    else:
        try:
            parsed = kind(value)
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            raise SettingError(name, raw, f"is not {what}", f"use {what}{_range_text(minimum, maximum)}") from None
        if (minimum is not None and parsed < minimum) or (maximum is not None and parsed > maximum):
            raise SettingError(name, raw, "is out of range", f"use a number{_range_text(minimum, maximum)}")
    if choices is not None and parsed not in choices:
        raise SettingError(name, raw, "is not a known value", f"use one of {', '.join(map(str, choices))}")
    return parsed


def _range_text(minimum, maximum) -> str:
    if minimum is not None and maximum is not None:
        return f" from {minimum} to {maximum}"
    if minimum is not None:
        return f" of at least {minimum}"
    return f" of at most {maximum}" if maximum is not None else ""
