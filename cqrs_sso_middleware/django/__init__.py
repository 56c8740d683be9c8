"""NHSmail sign-in for Django: the WSGI middleware around Django, and ``request.user`` from it.

Import this module only where Django is installed. Three pieces, each optional:

``sso_wsgi_application()`` — in ``wsgi.py``, instead of Django's own
``get_wsgi_application()``: Django's WSGI app wrapped by :class:`SSOMiddleware`. Settings
come from ``settings.CQRS_SSO = {...}`` (a dict of the same names as ``Settings``), plus
the usual sources: ``CQRS_SSO_*`` variables and ``CQRS_SSO["config"]`` (a TOML file). The
dict counts as code, so it wins (``docs/configuration.md``: arguments > environment > file).

``auth.CQRSRemoteUserMiddleware`` — in ``MIDDLEWARE`` after ``AuthenticationMiddleware``: Django's
``RemoteUserMiddleware`` reading the ``REMOTE_USER`` our middleware sets (the email), which
also puts the CQRS user (identity and account) on ``request.cqrs_user``. When the CQRS
session ends, ``REMOTE_USER`` disappears and the Django login ends with it.

``auth.CQRSRemoteUserBackend`` — in ``AUTHENTICATION_BACKENDS``: creates the Django user on the
first sign-in (username = the NHSmail email), keeps name and email in step with the CQRS
account at every login, and refuses any ``REMOTE_USER`` that did not come with a CQRS
session — so a server in front that sets ``REMOTE_USER`` itself can never create users.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.conf import settings as django_settings

from ..drivers.wsgi import SSOMiddleware
from ..observers import Observers
from ..runtime import Runtime
from ..settings import Settings

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

    from ..metrics import SSOMetrics

__all__ = ["check_database_migrated", "sso_settings", "sso_wsgi_application"]


def sso_settings() -> Settings:
    """``Settings`` from ``settings.CQRS_SSO`` and the usual sources."""
    values: dict[str, Any] = dict(getattr(django_settings, "CQRS_SSO", {}))
    config_file = values.pop("config", None)
    return Settings.load(config_file, **values)


def sso_wsgi_application(
    application: WSGIApplication | None = None,
    runtime: Runtime | None = None,
    metrics: SSOMetrics | None = None,
) -> SSOMiddleware:
    """Django's WSGI application behind the NHSmail sign-in (use in ``wsgi.py``);
    ``metrics`` (``cqrs_sso_middleware.metrics.SSOMetrics``) hears it and is served at
    ``metrics_path`` to ``metrics_allow``.

    Refuses to start (``ImproperlyConfigured``, with the command that fixes it) when the
    database has unapplied migrations: the first sign-in creates a Django user, and
    without the tables it would end in a bare "Server Error (500)"."""
    if application is None:
        from django.core.wsgi import get_wsgi_application

        application = get_wsgi_application()
    check_database_migrated()
    if runtime is None:
        runtime = Runtime.from_settings(
            sso_settings(), observers=metrics.observers() if metrics else Observers()
        )
    return SSOMiddleware(application, runtime=runtime, metrics=metrics)


def check_database_migrated() -> None:
    """Raise ``ImproperlyConfigured`` naming ``manage.py migrate`` when any migration of
    an installed app is not applied (or the database cannot be read at all)."""
    from django.core.exceptions import ImproperlyConfigured
    from django.db import DatabaseError, connections
    from django.db.migrations.executor import MigrationExecutor

    try:
        executor = MigrationExecutor(connections["default"])
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except DatabaseError as error:
        raise ImproperlyConfigured(f"cqrs-sso: cannot read the Django database: {error}") from None
    if pending:
        apps = ", ".join(sorted({migration.app_label for migration, _ in pending}))
        raise ImproperlyConfigured(
            f"cqrs-sso: the Django database has {len(pending)} unapplied migration(s) ({apps}); "
            "run `python manage.py migrate` before starting — sign-in creates Django users"
        )
