"""Path variants that try to reach a protected page through a public prefix.

Shared by the core, driver, proxy and nginx tests. ``PUBLIC_PATTERN`` is the deployer's
``public_paths`` entry; ``/secret`` stands for every protected page. Each variant must be
refused (400), sent to sign-in, or reach the app with a path that *every* server reading
below still serves from under ``/public/``.
"""

from __future__ import annotations

import unicodedata
from urllib.parse import unquote_to_bytes

PUBLIC_PATTERN = "/public/**"
PUBLIC_PREFIX = "/public/"

# (id, raw request path as sent on the wire)
VARIANTS: list[tuple[str, str]] = [
    ("dot-dot", "/public/../secret"),
    ("encoded-dots", "/public/%2e%2e/secret"),
    ("encoded-dots-upper", "/public/%2E%2E/secret"),
    ("half-encoded-dots-1", "/public/%2e./secret"),
    ("half-encoded-dots-2", "/public/.%2E/secret"),
    ("encoded-slash-after-dots", "/public/..%2fsecret"),
    ("encoded-slash-everywhere", "/public%2f..%2fsecret"),
    ("encoded-backslash", "/public/..%5csecret"),
    ("raw-backslash", "/public/..\\secret"),
    ("nul-then-climb", "/public/x%00/../../secret"),
    ("encoded-dot-slash-chain", "/public/%2e%2e%2f%2e%2e%2fsecret"),
    ("double-encoded-dots", "/public/%252e%252e/secret"),
    ("double-encoded-slash", "/public/..%252fsecret"),
    ("tomcat-path-parameter", "/public/..;/secret"),
    ("tomcat-path-parameter-value", "/public/..;jsessionid=1/secret"),
    ("parameter-on-public", "/public;x/../secret"),
    ("double-slash-then-dots", "/public//../secret"),
    ("leading-double-slash", "//public/../secret"),
    ("dot-then-dots", "/public/./../secret"),
    ("three-dots", "/public/.../secret"),
    ("dots-and-space", "/public/..%20/secret"),
    ("dots-and-tab", "/public/..%09/secret"),
    ("fullwidth-full-stops", "/public/%EF%BC%8E%EF%BC%8E/secret"),
    ("two-dot-leader", "/public/%E2%80%A5/secret"),
    ("fullwidth-solidus", "/public/..%EF%BC%8Fsecret"),
    ("fullwidth-reverse-solidus", "/public/..%EF%BC%BCsecret"),
    ("overlong-dots-2-byte", "/public/%c0%ae%c0%ae/secret"),
    ("overlong-dots-3-byte", "/public/%e0%80%ae%e0%80%ae/secret"),
    ("overlong-slash", "/public/..%c0%afsecret"),
    ("invalid-utf8", "/public/%ff/../secret"),
    ("dots-nul", "/public/..%00/secret"),
    ("crlf", "/public/%0d%0a/../../secret"),
    ("climb-above-root", "/public/../../secret"),
    ("climb-far", "/public/../../../etc/passwd"),
    ("trailing-dots", "/public/.."),
    ("mixed-case-prefix", "/PUBLIC/../secret"),
    ("encoded-slash-chain", "/public/%2F..%2F..%2Fsecret"),
    ("iis-unicode-escape", "/public/..%u2216secret"),
    ("nested-escape", "/public/%%32%65%%32%65/secret"),
    ("dot-nul-dot", "/public/.%00./secret"),
    ("encoded-dot-then-climb", "/public/%2e/../../secret"),
    ("dot-segment-plus-encoded-dot", "/public/..%2e/secret"),
    ("encoded-question-mark", "/public/x%3f/../../secret"),
    ("del-character", "/public/x%7f/../../secret"),
    ("ideographic-full-stops", "/public/%E3%80%82%E3%80%82/secret"),
    ("trailing-dot-segment-name", "/public/secret./x"),
    ("semicolon-in-public", "/public/a;b"),
    ("plain-public", "/public/app.css"),
    ("public-nested", "/public/css/site.css"),
    ("unreserved-escape", "/public/%7Euser"),
    ("dots-staying-public", "/public/x/../y"),
    ("plain-secret", "/secret"),
]

OUTCOMES = ("refused", "sign_in", "public")


def lenient_server_view(path: str) -> str:
    """What a lenient server may serve for ``path``: the union of the readings of nginx,
    Apache, Tomcat, IIS and NFKC-normalising frameworks, written independently of
    ``core.paths``: decode every escape (twice), ``\\`` as ``/``, NFKC, drop ``;params``,
    strip trailing dots and spaces, merge slashes, resolve dot segments clamped at the
    root, and lower-case (case-insensitive file systems)."""
    text = path
    for _ in range(2):
        text = unquote_to_bytes(text).decode("utf-8", "replace")
    text = unicodedata.normalize("NFKC", text).replace("\\", "/")
    output: list[str] = []
    for segment in text.split("/"):
        bare = segment.split(";", 1)[0]
        name = bare.rstrip(" .\t")
        if not name:
            if ".." in bare and output:  # "..", "...", ".. ", "..;x": a step up somewhere
                output.pop()
            continue
        output.append(name)
    return ("/" + "/".join(output)).lower()


def served_from_public(path: str) -> bool:
    view = lenient_server_view(path)
    return view.startswith(PUBLIC_PREFIX) or view == PUBLIC_PREFIX.rstrip("/")
