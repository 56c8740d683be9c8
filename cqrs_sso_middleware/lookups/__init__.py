"""Built-in account lookups, and turning an ``account_lookup`` setting into a callable.

A lookup answers "does CQRS have an account for this person?": an :class:`Account`, or
``None`` for "no account" (step 5 of the CQRS user guide). Raising is *not* "no account": the middleware shows
"temporarily unavailable" and creates no session.

Specs accepted by the ``account_lookup`` setting:

* ``package.module:function`` — your own callable (plain or ``async def``);
* ``csv:PATH`` — a CSV file with a header row holding at least ``email``; an optional
  ``account_id`` column (the email otherwise) and any other columns become attributes;
* ``json:PATH`` — a JSON list of objects with the same fields;
* ``sql:URL`` — any SQLAlchemy database URL, with the query in ``account_query``: a
  ``SELECT`` with the bind ``:email`` (``:oid``, ``:tid`` and ``:sub`` may be used too)
  returning at most one row; ``account_id`` (or the email) and any other columns become the
  account (needs the ``sql`` extra: SQLAlchemy, and psycopg for PostgreSQL);
* ``http:URL`` / ``https:URL`` — a JSON endpoint; ``{email}`` in the URL is replaced by the
  URL-encoded address. 200 with a JSON object is an account, 404 is "no account", anything
  else is a failure (503 for the user).

Matching is on the lower-cased email. Because Entra ID lets an address move to another
person, a file row may carry an ``oid`` column: when it is filled, only that Entra object
id matches the row, so a re-assigned address cannot take the account over.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from typing import Any

from ..core.errors import ConfigError
from ..core.identity import Account, Identity
from .files import FileAccountLookup
from .http import HTTPAccountLookup
from .sql import SQLAccountLookup

AccountLookup = Callable[[Identity], "Account | Awaitable[Account | None] | None"]
"""The deployer's account check: a plain or ``async`` callable; ``None`` means "no CQRS
account" (step 5 of the user guide); an exception or a time-out is *not* "no account"."""

__all__ = [
    "AccountLookup",
    "FileAccountLookup",
    "HTTPAccountLookup",
    "SQLAccountLookup",
    "resolve_account_lookup",
]


def _import_callable(spec: str) -> Callable[..., Any]:
    module_name, _, attribute = spec.partition(":")
    module = importlib.import_module(module_name)
    target: Any = module
    for part in attribute.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise TypeError(f"{spec} is not callable")
    return target  # type: ignore[no-any-return]


def _sql_lookup(url: str, query: str) -> SQLAccountLookup:
    if not query:
        raise ConfigError(["account_query: required with an sql: lookup (a SELECT that uses :email)"])
    if ":email" not in query:
        raise ConfigError(["account_query: must use the bind :email"])
    try:
        return SQLAccountLookup(url, query)
    except ImportError as error:
        raise ConfigError(
            [f"account_lookup: sql: needs the 'sql' extra (SQLAlchemy and a driver): {error}"]
        ) from error
    except Exception as error:  # SQLAlchemy's ArgumentError, NoSuchModuleError, …
        raise ConfigError([f"account_lookup: not a usable database URL ({type(error).__name__})"]) from error


def resolve_account_lookup(
    spec: str, *, account_query: str = "", timeout_seconds: float = 5.0
) -> AccountLookup:
    """Turn an ``account_lookup`` string into a callable, or raise ConfigError.

    ``account_query`` is the SQL of an ``sql:`` lookup; ``timeout_seconds`` bounds an
    ``http(s):`` lookup's request.
    """
    kind, _, rest = spec.partition(":")
    if kind in ("csv", "json") and rest:
        try:
            return FileAccountLookup(rest, kind)
        except (OSError, ValueError) as error:
            raise ConfigError([f"account_lookup: cannot load {kind} file {rest!r}: {error}"]) from error
    if kind == "sql" and rest:
        return _sql_lookup(rest, account_query)
    if kind in ("http", "https") and rest.startswith(("//", "http://", "https://")):
        url = rest if rest.startswith(("http://", "https://")) else spec  # "http:URL" or a bare URL
        if "{email}" not in url:
            raise ConfigError(["account_lookup: an http(s) lookup URL needs the placeholder {email}"])
        return HTTPAccountLookup(url, timeout_seconds)
    if ":" not in spec or not rest:
        raise ConfigError(
            [
                f"account_lookup: {spec!r} is not 'package.module:function', 'csv:PATH', 'json:PATH', "
                "'sql:URL' or 'http(s)://…{email}…'"
            ]
        )
    try:
        return _import_callable(spec)
    except (ImportError, AttributeError, TypeError) as error:
        raise ConfigError([f"account_lookup: cannot import {spec!r}: {error}"]) from error
