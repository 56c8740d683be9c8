"""Numbers read from a request: one reader, so that every one is refused the same way.

``str.isdigit()`` and ``int()`` accept far more than a person types: ``"²"`` is a digit to
``isdigit`` (and then a ``ValueError`` in ``int``), ``"٣"`` is 3 to ``int``, and a 5,000-digit
string makes ``int`` raise (CPython's limit on integer string conversion). Every number a
client sends (``?max_auth_age=``, a form's ``max_auth_age``, ``Content-Length`` in the WSGI
driver) goes through :func:`whole_number`: ASCII digits only, at most nine of them, within
the bounds the caller names. Anything else is ``None``, which callers answer with 400.
"""

from __future__ import annotations

import re

_ASCII_DIGITS = re.compile(r"[0-9]{1,9}")

# A step-up asks for a sign-in at most this old: the same floor as an access rule's
# max_auth_age_seconds (a minute; less is a loop of sign-ins, not a rule).
MIN_AUTH_AGE_SECONDS = 60
MAX_AUTH_AGE_SECONDS = 10**7  # about 116 days: longer than any session lives


def whole_number(text: str | None, low: int = 0, high: int = 999_999_999) -> int | None:
    """``text`` as a whole number within ``low``–``high``, or ``None`` when it is anything
    else: not ASCII digits, more than nine of them, or out of bounds."""
    if text is None or _ASCII_DIGITS.fullmatch(text) is None:
        return None
    value = int(text)
    return value if low <= value <= high else None


def auth_age(text: str | None) -> int | None:
    """A ``max_auth_age`` from a request (seconds), within the bounds a rule may have."""
    return whole_number(text, MIN_AUTH_AGE_SECONDS, MAX_AUTH_AGE_SECONDS)
