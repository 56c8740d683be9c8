"""What the core asks of a driver: the request it sees, the I/O it needs, the answer it gives.

``flow.SignInFlow.handle`` answers each request with an *outcome* — ``PassThrough`` (call
the app, with or without a user) or ``Respond`` (answer the client directly) — when it
needs no I/O, which is the case for every signed-in request. When it does need I/O it
returns a ``Flow``: a generator that *yields* effects ("make this HTTP call", "read the
form body", "look this account up"), is sent back each result, and returns the outcome.
Drivers perform effects and outcomes; they make no decisions.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

from .identity import Identity, User


class HeaderLookup(Protocol):
    """Case-insensitive header access; werkzeug's EnvironHeaders and Starlette's Headers fit."""

    def get(self, key: str, /) -> str | None: ...


@dataclass(slots=True)
class IncomingRequest:
    """The parts of an HTTP request the core reads.

    ``path`` is the path as the client sent it, still percent-encoded (ASGI ``raw_path``,
    WSGI ``RAW_URI``; a driver without the raw form encodes the decoded one). The core
    normalises it (``core.paths``) before any rule looks at it. ``root_path`` is where the
    app is mounted (WSGI ``SCRIPT_NAME``, ASGI ``root_path``): a path normalised out of it
    is refused.

    Treat as immutable. Not ``frozen``: a frozen dataclass's ``__init__`` sets each field
    through ``object.__setattr__``, which costs about a microsecond on every request.
    """

    method: str
    path: str
    query_string: str
    headers: HeaderLookup
    is_websocket: bool = False
    root_path: str = ""


# ---- effects: yielded by the core, performed by the driver ------------------------------


@dataclass(frozen=True, slots=True)
class HttpCall:
    """An HTTP request to the identity provider. Result: ``HttpReply`` or ``HttpFailure``."""

    method: Literal["GET", "POST"]
    url: str
    purpose: Literal["metadata", "jwks", "token"]
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
    """Read an ``application/x-www-form-urlencoded`` body of at most ``max_bytes``.

    Result: the fields as a mapping, or ``None`` when the body is too large or not a form.
    """

    max_bytes: int = 8192


@dataclass(frozen=True, slots=True)
class LookUpAccount:
    """Call the deployer's ``account_lookup``. Result: ``LookupReturned`` or ``LookupFailed``."""

    identity: Identity


@dataclass(frozen=True, slots=True)
class LookupReturned:
    value: object


@dataclass(frozen=True, slots=True)
class LookupFailed:
    """The lookup raised or timed out: *not* "no account" (design §3)."""

    reason: str


# ---- server-side store effects (session_store = memory or redis://) -----------------------
# Keys are already hashed by the core (core/session_store.py): a store dump holds no cookie
# value, no state and no token that could be replayed.


@dataclass(frozen=True, slots=True)
class StoreGet:
    """Read ``key``. Result: ``StoreReply(bytes | None)``."""

    key: str


@dataclass(frozen=True, slots=True)
class StorePut:
    """Write ``key`` with a time to live; add it to each set in ``indexes`` (each kept
    ``index_ttl_seconds``). Result: ``StoreReply(True)``.
    """

    key: str
    value: bytes
    ttl_seconds: int
    indexes: tuple[str, ...] = ()
    index_ttl_seconds: int = 0


@dataclass(frozen=True, slots=True)
class StoreDelete:
    """Delete ``keys`` and remove them from each of ``indexes``. Result: ``StoreReply(number
    deleted)``."""

    keys: tuple[str, ...]
    indexes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class StoreClaim:
    """Set ``key`` only if absent (single use: states, token ids). Result: ``StoreReply(bool)``,
    ``True`` for the first claim."""

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
    value: bytes | bool | int | tuple[str, ...] | None


@dataclass(frozen=True, slots=True)
class StoreFailed:
    """Unreachable, timed out, or not speaking the protocol. ``reason`` is for the log."""

    reason: str


StoreEffect = StoreGet | StorePut | StoreDelete | StoreClaim | StoreMembers | StorePing
Effect = HttpCall | ReadForm | LookUpAccount | StoreEffect
EffectResult = (
    HttpReply
    | HttpFailure
    | Mapping[str, str]
    | None
    | LookupReturned
    | LookupFailed
    | StoreReply
    | StoreFailed
)
STORE_EFFECT_TYPES = (StoreGet, StorePut, StoreDelete, StoreClaim, StoreMembers, StorePing)


# ---- outcomes: returned by the core --------------------------------------------------------


@dataclass(slots=True)
class PassThrough:
    """Call the wrapped app; inject ``user`` when set; append ``set_cookies`` to its response.

    ``path``, when set, is the normalised path (percent-encoded) that every rule was
    decided on and that differs from what the client sent: the driver must hand the app
    this path, never the client's, so the app serves what was checked.

    Treat as immutable; not ``frozen`` for the same hot-path reason as ``IncomingRequest``.
    """

    user: User | None
    set_cookies: tuple[str, ...] = ()
    path: str | None = None


@dataclass(frozen=True, slots=True)
class Respond:
    """Answer the client directly; the app is not called."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes = b""


Outcome = PassThrough | Respond
Flow = Generator[Effect, EffectResult, Outcome]
Decision = Outcome | Flow
OUTCOME_TYPES = (PassThrough, Respond)
