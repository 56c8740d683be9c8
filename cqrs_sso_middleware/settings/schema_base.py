"""What every section of the settings shares: descriptions, and small checks."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import field
from typing import TypeVar, cast
from urllib.parse import urlsplit

T = TypeVar("T")

ENTRA_AUTHORITY = "https://login.microsoftonline.com"
GUIDE_HELP_EMAIL = "support@cqrs.co.uk"
GUIDE_HELP_PHONE = "0800 4402777 (8am-6pm Mon-Fri exc Bank Holidays)"
MIN_SECRET_KEY_BYTES = 32
_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}
_PLAIN_PATH = re.compile(r"/[A-Za-z0-9._~/-]*")

Problems = list[str]


def doc(text: str, *, secret: bool = False, required: bool = False) -> dict[str, object]:
    """A setting's description; ``secret`` ones are never shown and may come from a ``_FILE``."""
    return {"doc": text, "secret": secret, "required": required}


def setting(
    default: T | None = None,
    text: str = "",
    *,
    factory: Callable[[], T] | None = None,
    secret: bool = False,
    required: bool = False,
    shown: bool | None = None,
) -> T:
    """One setting: its default (or ``factory`` for a mutable one) and its description, the
    source of docs/configuration.md. ``secret`` ones, and any with ``shown=False``, are left
    out of the settings' ``repr`` (so out of logs and tracebacks)."""
    metadata = doc(text, secret=secret, required=required)
    show = not secret if shown is None else shown
    if factory is not None:
        return field(default_factory=factory, repr=show, metadata=metadata)
    return field(default=cast(T, default), repr=show, metadata=metadata)


def is_loopback(url: str) -> bool:
    return (urlsplit(url).hostname or "") in _LOOPBACK_HOSTS


def plain_path_or_empty(problems: Problems, name: str, value: str) -> None:
    if value and not _PLAIN_PATH.fullmatch(value):
        problems.append(f"{name}: must be a plain path such as /healthz, or empty to disable")


def display_url(url: str) -> str:
    """A store URL fit for a log line: any password masked."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()
