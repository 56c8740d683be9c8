"""``cqrs-sso sessions list|revoke``: what a CQRS support engineer needs when an account is
withdrawn or a PC is lost — against the configured server-side store.

Only a Redis store can be reached from outside the serving processes: the cookie store's
sessions live in browsers (nothing to list, nothing to revoke before the time-out) and the
memory store's live inside one serving process. Each revocation is an audit line.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

from .audit import audit
from .core.interpreter import StoreOnly, run_sync
from .core.protocol import StoreGet, StoreReply
from .core.sessions.keeper import StoreProblem
from .core.sessions.session import Session
from .runtime import Runtime
from .settings import Settings
from .stores import store_kind
from .stores.redis import RedisStore


@dataclass(frozen=True)
class StoredSession:
    key: str
    session: Session
    ttl_seconds: int

    @property
    def ref(self) -> str:
        """A short handle for logs and the table: the end of the key's hash, never the cookie."""
        return self.key[-12:]


class SessionAdmin:
    """Lists and revokes the sessions of one deployment's Redis store, with the runtime's
    own session keeper (the same keys, deployment and record format as the service)."""

    def __init__(self, runtime: Runtime) -> None:
        store = runtime.store
        if not isinstance(store, RedisStore):
            raise TypeError("the sessions command needs a Redis store")
        self.store = store
        self.keeper = runtime.sessions.keeper

    def sessions(self, email: str | None = None) -> Iterator[StoredSession]:
        """Every stored session, or only those of ``email`` (``None``: every one)."""
        wanted = email.strip().lower() if email is not None else None
        for key, ttl in self.store.scan(f"{self.keeper.prefix}s:*"):
            reply = self.store.perform(StoreGet(key))
            record = reply.value if isinstance(reply, StoreReply) else None
            session = self.keeper.open_record(key, record) if isinstance(record, bytes) else None
            if session is None or (wanted is not None and session.user.email != wanted):
                continue
            yield StoredSession(key, session, ttl)

    def revoke(self, stored: StoredSession, by: str = "cli") -> bool:
        try:
            run_sync(self.keeper.end_stored(stored.key, stored.session), StoreOnly(self.store.perform))
        except StoreProblem:
            return False
        audit("session_revoked", email=stored.session.user.email, session=stored.ref, by=by)
        return True


def _is_email_address(value: str) -> bool:
    local, at, domain = value.strip().rpartition("@")
    return bool(local and at and domain) and not any(char.isspace() for char in value.strip())


def _when(moment: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(moment))


_UNREACHABLE_STORES = {
    "cookie": "session_store is 'cookie': sessions live in the browsers' encrypted cookies; they cannot be "
    "listed, and cannot be revoked before their time-out. Use a redis:// store to revoke.",
    "memory": "session_store is 'memory': sessions live inside the serving process and cannot be reached "
    "from here. Use a redis:// store to manage sessions from the command line.",
}


def _refusal(settings: Settings, action: str, email: str | None, everyone: bool) -> str | None:
    """Why this command cannot be run as asked (exit 2), or ``None``."""
    unreachable = _UNREACHABLE_STORES.get(store_kind(settings.session.session_store))
    if unreachable:
        return unreachable
    if action == "revoke" and email is None and not everyone:
        return "revoke needs --email EMAIL or --all"
    if email is not None and not _is_email_address(email):
        # A blank filter matches everyone: "--email ' '" must never mean "--all".
        return f"--email needs an email address, got {email!r}; --all ends every session"
    return None


def run_sessions_command(runtime: Runtime, action: str, email: str | None, everyone: bool) -> int:
    settings = runtime.settings
    refusal = _refusal(settings, action, email, everyone)
    if refusal:
        print(refusal, file=sys.stderr)
        return 2
    admin = SessionAdmin(runtime)
    try:
        found = list(admin.sessions(None if everyone else email))
        if action == "list":
            _print_sessions(found, settings.session.display_store, runtime.providers.first.name)
            return 0
        revoked = sum(admin.revoke(stored) for stored in found)
        print(f"revoked {revoked} session(s)" + (f" of {email}" if email and not everyone else ""))
        return 0 if revoked == len(found) else 1
    except Exception as error:  # redis down, bad URL: one line, not a traceback
        print(
            f"session store error ({settings.session.display_store}): {type(error).__name__}: {error}",
            file=sys.stderr,
        )
        return 1


def _print_sessions(found: list[StoredSession], where: str, first_provider: str = "nhsmail") -> None:
    header = ("session", "email", "account", "provider", "signed in (UTC)", "last seen (UTC)", "expires in")
    print("{:12}  {:32}  {:12}  {:10}  {:19}  {:19}  {}".format(*header))
    for stored in sorted(found, key=lambda s: (s.session.user.email, s.session.created_at)):
        user = stored.session.user
        signed_in, last_seen = _when(stored.session.created_at), _when(stored.session.renewed_at)
        provider = stored.session.provider or first_provider  # "": from before providers had names
        print(
            f"{stored.ref:12}  {user.email:32}  {user.account.account_id:12}  {provider:10}  "
            f"{signed_in:19}  {last_seen:19}  {stored.ttl_seconds}s"
        )
    print(f"{len(found)} session(s) in {where}")
