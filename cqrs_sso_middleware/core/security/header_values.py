"""Identity values as header values: one rule for every driver, forward-auth and the proxy.

A name such as "Łukasz Żółć" or "Siân Llŷr" cannot travel in a header as it is: a header
value is Latin-1 text to Python servers (PEP 3333, ASGI), and anything outside it either
fails (``UnicodeEncodeError``: a 500 for that person on every page behind forward-auth) or
arrives mis-decoded (raw UTF-8 read as Latin-1). So every identity value sent as a header —
forward-auth answers, the proxy's upstream headers, ``claim_headers`` — is
:func:`header_value`: printable ASCII as it is (every ``@nhs.net`` address, most names),
anything else as an RFC 8187 ``ext-value`` — ``UTF-8''`` then the UTF-8 bytes
percent-encoded, the form of ``Content-Disposition: filename*=`` — which any platform can
decode: :func:`decode_header_value` here, ``urllib.parse.unquote`` of what follows the
prefix elsewhere.
"""

from __future__ import annotations

from urllib.parse import quote, unquote

EXT_VALUE_PREFIX = "UTF-8''"
# RFC 8187 §3.2.1 attr-char: what an ext-value leaves unescaped (letters and digits too).
_ATTR_CHAR = "!#$&+-.^_`|~"


def header_value(text: str) -> str:
    """``text`` as a header value: as it is when it is printable ASCII, else an RFC 8187
    ``ext-value`` (``UTF-8''%C5%81ukasz``). A value that merely *starts* like an ext-value
    is encoded too, so a reader can always tell the two apart."""
    # isascii() and isprintable(): U+0020–U+007E only, in C (this runs on every proxied request).
    if text.isascii() and text.isprintable() and text[:7].upper() != EXT_VALUE_PREFIX:
        return text
    return EXT_VALUE_PREFIX + quote(text.encode("utf-8"), safe=_ATTR_CHAR)


def decode_header_value(value: str) -> str:
    """What :func:`header_value` encoded: for an app behind the proxy or forward-auth that
    reads the identity headers."""
    if value[:7].upper() == EXT_VALUE_PREFIX:
        return unquote(value[7:], encoding="utf-8", errors="strict")
    return value
