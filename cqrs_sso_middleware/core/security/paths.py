"""The one path every rule sees: RFC 3986 normalisation, or a refusal.

Access rules (``public_paths``, the middleware's own endpoints, the probes, the return-to
path, the forward-auth original URI) are decided on a path, and the app behind decides
what to serve on a path. When those two readings differ, a request that *looks* public is
served something protected — the class of bug behind several oauth2-proxy skip-auth
advisories (``/public/../secret``, ``/public/..%2fsecret``, ``/public/..;/secret``).

So there is exactly one reading, made here, and the app behind is given that same
reading (the drivers rewrite ``PATH_INFO`` / ``scope["path"]``; the proxy forwards these
bytes, not the client's):

1. every percent-escape is decoded once to check it: the bytes must be valid UTF-8
   (which refuses overlong forms such as ``%c0%ae``), with no control character and no
   ``/`` or ``\\`` that was encoded (``%2F``, ``%5C``: servers disagree on whether those
   separate segments), and no second layer of encoding (``%252e``);
2. only *unreserved* characters are left decoded (RFC 3986 §2.3, §6.2.2.2); every other
   escape is kept, with upper-case hex (§6.2.2.1), and raw non-ASCII is encoded;
3. runs of ``/`` are merged (as nginx's ``merge_slashes`` does), then dot segments are
   removed (RFC 3986 §5.2.4); a ``..`` that would climb above the root is refused;
4. segments that some server reads as a dot segment but RFC 3986 does not — ``..;x``
   (Tomcat path parameters), ``...`` and ``.. `` (Windows), ``．．`` (a full stop that
   NFKC turns into ``.``), a fullwidth solidus — are refused;
5. so are segments that end in a dot or a space (``/admin./x``, ``/admin%20/x``): Windows
   and IIS drop them, and would serve ``/admin/x`` for a path no rule names.

Rules and public paths then read the normal form the same way (:func:`path_readings`):
as written, and without path parameters (``;…``, also spelt ``%3B…``), which Tomcat, Jetty
and Spring drop before routing; and, with ``case_insensitive_paths``, without regard to
case, as IIS and ASP.NET route.

What is refused gets ``400``: no honest browser sends such a path (browsers normalise
dot segments themselves), so ambiguity is resolved by saying no rather than by guessing.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

MAX_PATH_BYTES = 8192

# A path that is already in normal form: printable ASCII from the RFC 3986 pchar set (no
# "%", no "\\"), single slashes, and no segment that starts with a dot. Almost every real
# request matches, and then nothing else needs to run (hot path).
# (No segment ends with a dot either: see point 5 above.)
_ALREADY_NORMAL = re.compile(
    r"(?:/[A-Za-z0-9_~!$&'()*+,;=:@-](?:[A-Za-z0-9._~!$&'()*+,;=:@-]*[A-Za-z0-9_~!$&'()*+,;=:@-])?)+/?|/"
)
_ESCAPE = re.compile(rb"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# RFC 3986 §3.3 pchar without "%": what may stand raw in a normalised path.
_RAW_ALLOWED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/")
_DOUBLE_ENCODED = re.compile(r"%[0-9A-Fa-f]{2}")


@dataclass(frozen=True, slots=True)
class PathRefused:
    """The path is ambiguous; ``reason`` is for the audit log (never shown to the client)."""

    reason: str


def normalise_path(raw: str | bytes) -> str | PathRefused:
    """The normal form of a request path as the client sent it (still percent-encoded).

    Returns the normalised path, percent-encoded, always starting with ``/``, or a
    :class:`PathRefused`. Idempotent: a normalised path normalises to itself.
    """
    text = raw.decode("latin-1") if isinstance(raw, bytes) else raw
    if len(text) > MAX_PATH_BYTES:
        return PathRefused("too_long")
    if _ALREADY_NORMAL.fullmatch(text) and ".;" not in text:
        return text
    data = raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogateescape")
    if not data.startswith(b"/"):
        return PathRefused("not_absolute")
    problem = _check_decoded(data)
    if problem:
        return PathRefused(problem)
    segments = _canonical(data).split("/")[1:]
    output = _without_dot_segments(segments)
    if isinstance(output, PathRefused):
        return output
    ends_with_slash = segments[-1] in ("", ".", "..")
    path = "/" + "/".join(output)
    return path + "/" if ends_with_slash and output else path


def _without_dot_segments(segments: list[str]) -> list[str] | PathRefused:
    """RFC 3986 §5.2.4 over canonical segments, empty ones merged; points 3 to 5 above."""
    output: list[str] = []
    for segment in segments:
        if segment == ".":
            continue
        if segment == "..":
            if not output:
                return PathRefused("climbs_above_root")
            output.pop()
            continue
        if _reads_as_dot_segment(segment):
            return PathRefused("dot_segment_lookalike")
        if _ends_in_dot_or_space(segment):
            return PathRefused("trailing_dot_or_space")
        if segment:
            output.append(segment)
    return output


def normalise_target(target: str) -> str | PathRefused:
    """``path?query#fragment`` with its path normalised; query and fragment untouched."""
    cut = min((i for i in (target.find("?"), target.find("#")) if i >= 0), default=len(target))
    path = normalise_path(target[:cut])
    return path if isinstance(path, PathRefused) else path + target[cut:]


def _check_decoded(data: bytes) -> str:
    """Decode every escape once and check what it stands for; ``""`` when it is sound."""
    if b"\\" in data:
        return "backslash"
    try:
        decoded = _ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), data).decode("utf-8")
    except UnicodeDecodeError:
        return "invalid_utf8"  # Python's strict decoder also refuses overlong forms
    if b"%" in _ESCAPE.sub(b"", data):
        return "malformed_escape"
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in decoded):
        return "control_character"
    if _encoded_separator(data):
        return "encoded_separator"
    if _DOUBLE_ENCODED.search(decoded):
        return "double_encoding"
    # A server that applies NFKC reads U+FF0F as "/" and U+FF05 as "%": refuse lookalikes.
    folded = unicodedata.normalize("NFKC", decoded)
    if "\\" in folded or any(folded.count(c) != decoded.count(c) for c in "/%?#"):
        return "separator_lookalike"
    return ""


def _encoded_separator(data: bytes) -> bool:
    return any(int(m.group(1), 16) in (0x2F, 0x5C) for m in _ESCAPE.finditer(data))


def _canonical(data: bytes) -> str:
    """Unreserved escapes decoded, other escapes upper-case, raw non-ASCII encoded."""
    out: list[str] = []
    index = 0
    while index < len(data):
        byte = data[index]
        if byte == 0x25:  # "%", already checked to be followed by two hex digits
            value = int(data[index + 1 : index + 3], 16)
            out.append(chr(value) if value in _UNRESERVED else f"%{value:02X}")
            index += 3
            continue
        out.append(chr(byte) if byte in _RAW_ALLOWED else f"%{byte:02X}")
        index += 1
    return "".join(out)


def _reads_as_dot_segment(segment: str) -> bool:
    """A segment that is not "." or ".." to RFC 3986 but is to some server."""
    if "." not in segment and "%" not in segment:
        return False
    decoded = _ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), segment.encode("ascii")).decode("utf-8")
    bare = unicodedata.normalize("NFKC", decoded).split(";", 1)[0].rstrip(" .")
    return bare == "" and "." in unicodedata.normalize("NFKC", decoded)


def _ends_in_dot_or_space(segment: str) -> bool:
    """A segment Windows would serve without its trailing dots and spaces (``admin.``,
    ``admin%20``, ``admin.;x``), also after NFKC (an ideographic space)."""
    if not segment.endswith((".", "%20")) and "%" not in segment and ";" not in segment:
        return False
    decoded = _ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), segment.encode("ascii")).decode("utf-8")
    folded = unicodedata.normalize("NFKC", decoded)
    return any(part != part.rstrip(" .") for part in (folded, folded.split(";", 1)[0]))


# -- how rules and public paths read a normalised path -----------------------------------------

_PATH_PARAMETERS = re.compile(r"(?:;|%3B)[^/]*")


def has_path_parameters(path: str) -> bool:
    """Whether a normalised path has ``;…`` parameters (also spelt ``%3B``: escapes are
    upper-case once normalised), which some servers drop before routing."""
    return ";" in path or "%3B" in path


def path_readings(path: str) -> tuple[str, ...]:
    """Every path a server behind may route ``path`` (normalised) to: as written, and
    without its path parameters — ``;…``, and ``%3B…``, which a server that decodes before
    it drops parameters reads the same way. One reading for almost every path."""
    if not has_path_parameters(path):
        return (path,)
    return (path, _PATH_PARAMETERS.sub("", path))


# -- public_paths ----------------------------------------------------------------------------


def path_pattern_regex(pattern: str, ignore_case: bool = False) -> re.Pattern[str]:
    """A ``public_paths`` or access-rule pattern as a regular expression, to ``fullmatch``
    against a *normalised* path (see ``compile_path_pattern``); ``ignore_case`` for
    ``case_insensitive_paths``."""
    case = re.IGNORECASE if ignore_case else 0
    if pattern.startswith("re:"):
        return re.compile(pattern[3:], case)
    parts: list[str] = []
    index = 0
    while index < len(pattern):
        if pattern.startswith("**", index):
            parts.append(".*")
            index += 2
        elif pattern[index] == "*":
            parts.append("[^/]*")
            index += 1
        elif pattern[index] == "?":
            parts.append("[^/]")
            index += 1
        else:
            parts.append(re.escape(pattern[index]))
            index += 1
    return re.compile("".join(parts), re.DOTALL | case)


def compile_path_pattern(pattern: str, ignore_case: bool = False) -> Callable[[str], bool]:
    """A ``public_paths`` entry as a predicate over *normalised* paths.

    Globs are anchored at both ends; ``*`` matches within one segment (never a ``/``),
    ``**`` matches across segments, ``?`` one character other than ``/``. ``re:`` patterns
    are regular expressions matched with ``fullmatch``.
    """
    compiled = path_pattern_regex(pattern, ignore_case)
    return lambda path: compiled.fullmatch(path) is not None


class PublicPaths:
    """The ``public_paths`` of one deployment: which normalised paths pass without a session."""

    def __init__(self, patterns: tuple[str, ...], ignore_case: bool = False) -> None:
        self.patterns = patterns
        self._matchers = [compile_path_pattern(p, ignore_case) for p in patterns]

    def __contains__(self, path: str) -> bool:
        # Tomcat, Jetty and Spring drop ";…" path parameters before routing, so "/admin;.css"
        # is served as "/admin": a path that reads more than one way never counts as public,
        # whatever pattern (such as "re:.*\\.css") its text would match.
        if not self._matchers or has_path_parameters(path):
            return False
        return any(matches(path) for matches in self._matchers)


def too_broad(pattern: str) -> bool:
    """Whether a ``public_paths`` pattern opens the site root or every top-level page."""
    matches = compile_path_pattern(pattern)
    return any(matches(probe) for probe in ("/", "/c9a1f0e2", "/c9a1f0e2/7b3d"))


_EXTENSIONS = ("css", "js", "png", "jpg", "gif", "svg", "ico", "woff2", "map", "json", "txt", "html")


def extension_style(pattern: str) -> bool:
    """Whether a ``public_paths`` pattern opens any path that merely *ends* a certain way
    (``re:.*\\.css``, ``**.js``): such a pattern makes public whatever page a server serves
    for ``/admin.css`` or ``/admin/x.js``, and on servers that read suffixes loosely (Spring's
    suffix matching, rewrite rules) that can be a protected page. Prefer ``/static/**``."""
    matches = compile_path_pattern(pattern)
    return any(
        matches(f"/c9a1f0e2/7b3d.{extension}") or matches(f"/c9a1f0e2.{extension}")
        for extension in _EXTENSIONS
    )
