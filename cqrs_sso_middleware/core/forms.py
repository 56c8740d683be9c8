"""Parsing the small ``application/x-www-form-urlencoded`` bodies of our own POST endpoints."""

from __future__ import annotations

from urllib.parse import parse_qs

MAX_FORM_FIELDS = 20


def parse_form(body: bytes, content_type: str | None) -> dict[str, str] | None:
    """The form's fields (first value of each), or ``None`` if the body is not a usable form."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type != "application/x-www-form-urlencoded":
        return None
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
    except (UnicodeDecodeError, ValueError):
        return None
    return {name: values[0] for name, values in fields.items()}
