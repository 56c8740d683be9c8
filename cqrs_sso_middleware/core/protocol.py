"""The vocabulary between the core and its drivers: a request in, effects out, an outcome back.

The core answers each request with an **outcome** when it needs no I/O (every signed-in
request with the cookie store), or with a **flow**: a generator that *yields* effects
("make this HTTP call", "read the form body", "look this account up", "read this store
key"), is sent each result, and *returns* the outcome. ``interpreter.run_sync`` and
``run_async`` perform the effects; drivers perform the outcome. Everything here is data:
frozen where it can be, with no behaviour a driver could get wrong.

Audit events ride on the outcome, as h11's events do: the core never logs; the runtime logs
and counts what the outcome carries.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from types import GeneratorType
from typing import Any, Literal, Protocol

from typing_extensions import TypeIs

from .identity import Account, Identity, User


class HeaderLookup(Protocol):
    """Case-insensitive header access; werkzeug's EnvironHeaders and Starlette's Headers fit."""

    def get(self, key: str, /) -> str | None: ...


@dataclass(slots=True)
class IncomingRequest:
    """The parts of an HTTP request the core reads.

    ``path`` is the path as the client sent it, still percent-encoded (ASGI ``raw_path``,
    WSGI ``RAW_URI``; a driver without the raw form encodes the decoded one). The core
    normalises it (``security.paths``) before any rule looks at it. ``root_path`` is where
    the app is mounted (WSGI ``SCRIPT_NAME``, ASGI ``root_path``): a path normalised out of
    it is refused.

    Treat as immutable. Not ``frozen``: a frozen dataclass's ``__init__`` sets each field
    through ``object.__setattr__``, which costs about a microsecond on every request.
    """

    method: str
    path: str
    query_string: str
    headers: HeaderLookup
    is_websocket: bool = False
    root_path: str = ""


# ---- effects: yielded by the core, performed through the interpreter ----------------------


@dataclass(frozen=True, slots=True)
class HttpCall:
    """An HTTP request to the identity provider. Result: ``HttpReply`` or ``HttpFailure``."""

    method: Literal["GET", "POST"]
    url: str
    purpose: Literal["metadata", "jwks", "token", "userinfo"]
    form: tuple[tuple[str, str], ...] | None = None
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class HttpReply:
    status: int
    body: bytes


@dataclass(frozen=True, slots=True)
class HttpFailure:
    """Connection refused, time-out, TLS failure… ``reason`` is for the log."""

    reason: str


@dataclass(frozen=True, slots=True)
class ReadForm:
    """Read the request body, at most ``max_bytes``. Result: the raw bytes, or ``None`` when
    the body is larger or the client went away. The core parses it (``forms.parse_form``)."""

    max_bytes: int = 8192


@dataclass(frozen=True, slots=True)
class LookUpAccount:
    """Ask the deployer's ``account_lookup``. Result: ``LookupReturned`` or ``LookupFailed``."""

    identity: Identity


@dataclass(frozen=True, slots=True)
class LookupReturned:
    """A real answer: an account, or ``None`` for "no CQRS account" (step 5 of the user guide)."""

    account: Account | None


@dataclass(frozen=True, slots=True)
class LookupFailed:
    """The lookup raised, timed out or returned something else: *not* "no account"."""

    reason: str


# Server-side store effects (session_store = memory or redis://). Keys are already hashed
# by the core (sessions/keeper.py): a store dump holds no cookie value, state or token.


@dataclass(frozen=True, slots=True)
class StoreGet:
    """Read ``key``, unless ``unless`` is set (a revocation mark: the record was ended, and
    what is under ``key`` now is a copy put back). Read together, in one round trip.
    Result: ``StoreReply(bytes | None)``."""

    key: str
    unless: str = ""


@dataclass(frozen=True, slots=True)
class StorePut:
    """Write ``key`` with a time to live; add it to each set in ``indexes`` (each kept
    ``index_ttl_seconds``). Result: ``StoreReply(True)``."""

    key: str
    value: bytes
    ttl_seconds: int
    indexes: tuple[str, ...] = ()
    index_ttl_seconds: int = 0


@dataclass(frozen=True, slots=True)
class StoreDelete:
    """Delete ``keys``, remove them from each of ``indexes``, and set each of ``marks`` for
    ``mark_ttl_seconds`` (revocation marks, which a ``StoreGet`` reads beside its key).
    Result: ``StoreReply(number deleted)``."""

    keys: tuple[str, ...]
    indexes: tuple[str, ...] = ()
    marks: tuple[str, ...] = ()
    mark_ttl_seconds: int = 0


@dataclass(frozen=True, slots=True)
class StoreClaim:
    """Set ``key`` only if absent (single use: states, token ids). Result:
    ``StoreReply(bool)``, ``True`` for the first claim."""

    key: str
    ttl_seconds: int


@dataclass(frozen=True, slots=True)
class StoreMembers:
    """The keys in ``index``. Result: ``StoreReply(tuple[str, ...])``."""

    index: str


@dataclass(frozen=True, slots=True)
class StorePing:
    """Is the store reachable? Result: ``StoreReply(True)``."""


@dataclass(frozen=True, slots=True)
class StoreReply:
    # str: StorePing's description of what the store reaches (a topology, a primary).
    value: bytes | bool | int | str | tuple[str, ...] | None


@dataclass(frozen=True, slots=True)
class StoreFailed:
    """Unreachable, timed out, or not speaking the protocol. ``reason`` is for the log."""

    reason: str


StoreEffect = StoreGet | StorePut | StoreDelete | StoreClaim | StoreMembers | StorePing
StoreResult = StoreReply | StoreFailed
HttpResult = HttpReply | HttpFailure
LookupResult = LookupReturned | LookupFailed
# The closed union: the interpreter handles exactly these, and a new one fails type checking
# until it is handled there.
Effect = HttpCall | ReadForm | LookUpAccount | StoreEffect
EffectResult = HttpResult | bytes | None | LookupResult | StoreResult


# ---- outcomes: returned by the core --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """A security event for the audit log: a name and identifiers (never a token or secret)."""

    name: str
    fields: Mapping[str, object] = field(default_factory=dict)


Cookies = tuple[str, ...]
Events = tuple[AuditEvent, ...]
Headers = tuple[tuple[str, str], ...]


@dataclass(slots=True)
class PassThrough:
    """Call the wrapped app; inject ``user`` when set; append ``set_cookies`` to its response.

    ``path``, when set, is the normalised path (percent-encoded) that every rule was
    decided on and that differs from what the client sent: the driver must hand the app
    this path, never the client's, so the app serves what was checked.

    Treat as immutable; not ``frozen`` for the same hot-path reason as ``IncomingRequest``.
    """

    user: User | None
    set_cookies: Cookies = ()
    path: str | None = None
    events: Events = ()


@dataclass(frozen=True, slots=True)
class _Answered:
    """What every answer the package makes itself carries besides its body."""

    set_cookies: Cookies = field(default=(), kw_only=True)
    events: Events = field(default=(), kw_only=True)


@dataclass(frozen=True, slots=True)
class Redirect(_Answered):
    """``303 See Other`` to ``location``: browsers follow with a GET, whatever came before."""

    location: str


@dataclass(frozen=True, slots=True)
class Page(_Answered):
    """An HTML page, described rather than rendered: ``template`` with ``context`` (the
    common parts — help desk, links — are added when it is rendered). A page that only the
    provider may frame (front-channel logout) names it in ``frame_ancestor``."""

    template: str
    status: int = 200
    context: Mapping[str, Any] = field(default_factory=dict)
    headers: Headers = ()
    frame_ancestor: str | None = None


@dataclass(frozen=True, slots=True)
class JsonReply(_Answered):
    """A JSON answer (API and XHR callers, forward-auth, probes): shapes in ``replies``."""

    status: int
    body: Mapping[str, object]
    headers: Headers = ()


@dataclass(frozen=True, slots=True)
class Empty(_Answered):
    """A status and headers without a body (forward-auth's ``202``)."""

    status: int
    headers: Headers = ()


@dataclass(frozen=True, slots=True)
class Static(_Answered):
    """A packaged asset (the stylesheet), cacheable."""

    asset: str
    content_type: str


Answer = Redirect | Page | JsonReply | Empty | Static
Outcome = PassThrough | Answer
OUTCOME_TYPES = (PassThrough, Redirect, Page, JsonReply, Empty, Static)
Flow = Generator[Effect, Any, Outcome]
Decision = Outcome | Flow


def is_flow(decision: Decision) -> TypeIs[Flow]:
    """Whether a decision still needs effects performed (a generator), or is the outcome."""
    return type(decision) is GeneratorType


@dataclass(frozen=True, slots=True)
class Respond:
    """A finished answer for the driver to write: status, headers, body bytes."""

    status: int
    headers: Headers
    body: bytes = b""
