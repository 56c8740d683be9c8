"""Where a user may be sent back to after signing in: same-origin paths only.

An open redirect on a sign-in service is a phishing tool with an NHS address on it, so the
rule is an allow-list, not a block-list: the return-to value (``rd``) must be a plain
absolute path on this origin. Anything else is refused and the caller falls back to the
default page. Browsers are lenient in ways servers are not — they treat ``\\`` as ``/``,
drop tabs and newlines inside URLs, and some apps decode a path again before redirecting
— so the checks run on the value and on every percent-decoding of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

from .paths import PathRefused, normalise_target

MAX_RETURN_PATH_LENGTH = 2048
_MAX_DECODE_ROUNDS = 4
# RFC 3986 §3.3 path and §3.4 query characters, plus "%" for escapes and "#" for a
# fragment. Space, quotes, angle brackets, backslash and every control character are out.
_ALLOWED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/?%#")


def _looks_like_another_origin(path: str) -> bool:
    """True for values a browser or a later decoder could read as a different origin."""
    if not path.startswith("/"):
        return True  # relative paths and schemes ("javascript:", "https:") are refused
    if path.startswith(("//", "/\\")):
        return True  # scheme-relative URL: "//evil.example" and its backslash twin
    return any(ord(char) < 0x20 or ord(char) == 0x7F or char == "\\" for char in path)


def safe_return_path(candidate: str | None, *, reserved_prefix: str = "") -> str | None:
    """``candidate`` with its path normalised when it is a safe same-origin path, else ``None``.

    ``reserved_prefix`` (the middleware's own endpoints, e.g. ``/oauth2``) is refused too,
    so a return path can never start another sign-in or a sign-out. The path is normalised
    by ``core.paths`` (one reading of a path everywhere); an ambiguous one is refused.
    """
    if not candidate or len(candidate) > MAX_RETURN_PATH_LENGTH:
        return None
    if any(char not in _ALLOWED for char in candidate):
        return None
    decoded = _fully_decoded(candidate)
    if decoded is None:
        return None
    normal = normalise_target(candidate)
    if isinstance(normal, PathRefused):
        return None
    if reserved_prefix and (_is_under(decoded, reserved_prefix) or _is_under(normal, reserved_prefix)):
        return None
    return normal


def _fully_decoded(candidate: str) -> str | None:
    """The value after every percent-decoding a browser or a later decoder might apply, when
    no stage of it could be read as another origin; else ``None``."""
    value = candidate
    for _ in range(_MAX_DECODE_ROUNDS):
        if _looks_like_another_origin(value):
            return None
        try:
            decoded = unquote(value, errors="strict") if "%" in value else value
        except UnicodeDecodeError:
            return None  # not UTF-8 once decoded: no honest link looks like that
        if decoded == value:
            return None if _looks_like_another_origin(value) else value
        value = decoded
    return None  # still decoding after several rounds: nested encoding is a trick


def _is_under(path: str, prefix: str) -> bool:
    path_only = path.split("?", 1)[0].split("#", 1)[0]
    return path_only == prefix or path_only.startswith(prefix.rstrip("/") + "/")


@dataclass(frozen=True, slots=True)
class ReturnPaths:
    """Where one deployment sends people back to: a safe same-origin path outside its own
    endpoints (``prefix``), or else ``default`` (``default_return_path``)."""

    prefix: str
    default: str

    def safe(self, candidate: str | None) -> str | None:
        return safe_return_path(candidate, reserved_prefix=self.prefix)

    def or_default(self, candidate: str | None) -> str:
        return self.safe(candidate) or self.default

    def of_request(self, path: str, query_string: str) -> str:
        """The request's own path (normalised, still percent-encoded) and query."""
        return self.or_default(f"{path}?{query_string}" if query_string else path)
