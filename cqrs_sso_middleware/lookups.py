"""Built-in account lookups, and turning an ``account_lookup`` setting into a callable.

A lookup answers "does CQRS have an account for this person?": an :class:`Account`, or
``None`` for "no account" (seed step 5). Raising is *not* "no account": the middleware shows
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

import csv
import importlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .core.errors import ConfigError
from .core.identity import Account, Identity

if TYPE_CHECKING:
    from .core.identity import AccountLookup

log = logging.getLogger("cqrs_sso.lookup")


class FileAccountLookup:
    """Accounts from a CSV or JSON file, re-read when the file changes.

    ``nonblocking``: a call is a dictionary read and a ``stat``, so the drivers call it
    directly instead of handing it to a worker thread (a hop that cost about 0.3 ms of the
    sign-in round trip, benchmarks/proxy.py). A changed file is re-read within that call.
    """

    nonblocking = True

    def __init__(self, path: str | os.PathLike[str], file_format: str) -> None:
        self.path = Path(path)
        self.file_format = file_format
        self._mtime = -1.0
        self._accounts: dict[str, Mapping[str, str]] = {}
        self._load()  # fail at start-up, not at the first sign-in

    def __call__(self, identity: Identity) -> Account | None:
        self._reload_if_changed()
        row = self._accounts.get(identity.email)
        if row is None:
            return None
        bound_oid = row.get("oid", "").strip().lower()
        if bound_oid and bound_oid != identity.object_id.lower():
            log.warning("account for %s is bound to another Entra object id", identity.email)
            return None
        attributes = {k: v for k, v in row.items() if k not in {"email", "account_id", "oid"}}
        return Account(row.get("account_id") or identity.email, identity.email, attributes)

    def _reload_if_changed(self) -> None:
        try:
            if self.path.stat().st_mtime != self._mtime:
                self._load()
        except (OSError, ValueError) as error:
            # Keep serving the last good copy; the error is the deployer's to see in the log.
            log.error("account file %s could not be re-read: %s", self.path, error)

    def _load(self) -> None:
        mtime = self.path.stat().st_mtime
        text = self.path.read_text(encoding="utf-8-sig")
        rows = self._parse_csv(text) if self.file_format == "csv" else self._parse_json(text)
        accounts: dict[str, Mapping[str, str]] = {}
        for row in rows:
            email = str(row.get("email") or "").strip().lower()
            if email:
                accounts[email] = {str(k): "" if v is None else str(v) for k, v in row.items()}
        self._accounts, self._mtime = accounts, mtime

    @staticmethod
    def _parse_csv(text: str) -> Iterable[Mapping[str, Any]]:
        reader = csv.DictReader(text.splitlines())
        fieldnames = [name.strip().lower() for name in reader.fieldnames or []]
        if "email" not in fieldnames:
            raise ValueError("the header row has no 'email' column")
        reader.fieldnames = fieldnames
        return list(reader)

    @staticmethod
    def _parse_json(text: str) -> Iterable[Mapping[str, Any]]:
        data = json.loads(text)
        if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
            raise ValueError("expected a JSON list of objects with an 'email' field")
        return data


class SQLAccountLookup:
    """Accounts from a database query (SQLAlchemy Core, pooled connections)."""

    def __init__(self, url: str, query: str) -> None:
        from sqlalchemy import create_engine, text

        self._query = text(query)
        self._engine = create_engine(url, pool_pre_ping=True, pool_size=4, max_overflow=4)

    def __call__(self, identity: Identity) -> Account | None:
        binds = {
            "email": identity.email,
            "oid": identity.object_id,
            "tid": identity.tenant_id,
            "sub": identity.subject,
        }
        with self._engine.connect() as connection:
            rows = connection.execute(self._query, binds).mappings().fetchmany(2)
        if not rows:
            return None
        if len(rows) > 1:
            # Two accounts for one address is a data problem, not a choice to make here.
            raise LookupError("account_query returned more than one row")
        row = {str(k): "" if v is None else str(v) for k, v in rows[0].items()}
        account_id = row.pop("account_id", "") or identity.email
        row.pop("email", None)
        return Account(account_id, identity.email, row)

    def close(self) -> None:
        self._engine.dispose()


class HTTPAccountLookup:
    """Accounts from a JSON endpoint; ``{email}`` in the URL is the URL-encoded address."""

    def __init__(self, url_template: str, timeout: float) -> None:
        import httpx

        self._template = url_template
        self._client = httpx.Client(timeout=timeout, follow_redirects=False)

    def __call__(self, identity: Identity) -> Account | None:
        from urllib.parse import quote

        url = self._template.replace("{email}", quote(identity.email, safe=""))
        reply = self._client.get(url, headers={"Accept": "application/json"})
        if reply.status_code == 404:
            return None
        reply.raise_for_status()
        if reply.status_code != 200:
            raise LookupError(f"account endpoint answered HTTP {reply.status_code}")
        data = reply.json()
        if not isinstance(data, dict):
            raise LookupError("account endpoint did not answer a JSON object")
        attributes = {str(k): str(v) for k, v in data.items() if k not in {"account_id", "email"}}
        return Account(str(data.get("account_id") or identity.email), identity.email, attributes)

    def close(self) -> None:
        self._client.close()


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
        raise ConfigError(["account_query: required with an sql: lookup (set CQRS_SSO_ACCOUNT_QUERY)"])
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
