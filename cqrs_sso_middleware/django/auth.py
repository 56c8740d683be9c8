"""``request.user`` from the CQRS session: the middleware and the authentication backend.

Referenced from Django settings by dotted path (``cqrs_sso_middleware.django.auth.…``), so
Django is set up before this module is imported. See ``cqrs_sso_middleware.django``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib.auth.backends import RemoteUserBackend
from django.contrib.auth.middleware import RemoteUserMiddleware

from ..core.identity import User

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser
    from django.http import HttpRequest

ENVIRON_KEY = "cqrs_sso.user"


def cqrs_user(request: HttpRequest) -> User | None:
    """The signed-in CQRS user our WSGI middleware injected, if any."""
    user = request.META.get(ENVIRON_KEY)
    return user if isinstance(user, User) else None


class CQRSRemoteUserMiddleware(RemoteUserMiddleware):
    """``RemoteUserMiddleware`` for ``REMOTE_USER`` set by :class:`SSOMiddleware`; also sets
    ``request.cqrs_user``. The header is a WSGI environ key that only our middleware sets
    (it deletes any copy a client sends), so it is trusted exactly as far as our session."""

    def process_request(self, request: HttpRequest) -> None:
        request.cqrs_user = cqrs_user(request)
        super().process_request(request)


class CQRSRemoteUserBackend(RemoteUserBackend):
    """Users from the CQRS session: created on first sign-in, kept in step, never otherwise.

    At every sign-in the user's name and email follow the CQRS identity, and their Django
    groups are set to exactly their CQRS roles (``User.roles``: Entra app roles, group ids
    and the account's own), each group made when first needed — so ``user.groups`` and
    Django permissions granted to those groups follow NHSmail and the CQRS account. Manage
    access through roles, not by editing these users' groups by hand: the next sign-in puts
    them back."""

    create_unknown_user = True

    def authenticate(self, request: HttpRequest | None, remote_user: str | None) -> AbstractBaseUser | None:
        signed_in = cqrs_user(request) if request is not None else None
        if signed_in is None or not remote_user or remote_user.strip().lower() != signed_in.email:
            return None  # REMOTE_USER without our session: not ours to trust
        user = super().authenticate(request, remote_user)
        if user is not None:
            self._keep_in_step(user, signed_in)
        return user

    def clean_username(self, username: str) -> str:
        return username.strip().lower()

    @staticmethod
    def _keep_in_step(user: AbstractBaseUser, signed_in: User) -> None:
        name = signed_in.identity.name or ""
        first, _, last = name.partition(" ")
        changes = {"email": signed_in.email, "first_name": first[:150], "last_name": last[:150]}
        changed = [field for field, value in changes.items() if getattr(user, field, value) != value]
        for field in changed:
            setattr(user, field, changes[field])
        if changed:
            user.save(update_fields=changed)
        _set_groups(user, signed_in.roles)


def _set_groups(user: AbstractBaseUser, roles: frozenset[str]) -> None:
    from django.contrib.auth.models import Group

    groups = [Group.objects.get_or_create(name=role[:150])[0] for role in sorted(roles)]
    user.groups.set(groups)
