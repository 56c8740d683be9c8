"""Built-in account lookups, and turning an ``account_lookup`` setting into a callable.

A lookup answers "does CQRS have an account for this person?": an :class:`Account`, or
``None`` for "no account" (seed step 5). Raising is *not* "no account": the middleware shows
"temporarily unavailable" and creates no session.

Specs accepted by the ``account_lookup`` setting:

* ``package.module:function`` — your own callable (plain or ``async def``);
* ``csv:PATH`` — a CSV file with a header row holding at least ``email``; an optional
  ``account_id`` column (the email otherwise) and any other columns become attributes;
* ``json:PATH`` — a JSON list of objects with the same fields.

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
    from .settings import AccountLookup, Settings

log = logging.getLogger("cqrs_sso.lookup")


class FileAccountLookup:
    """Accounts from a CSV or JSON file, re-read when the file changes."""

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


def _import_callable(spec: str) -> Callable[..., Any]:
    module_name, _, attribute = spec.partition(":")
    module = importlib.import_module(module_name)
    target: Any = module
    for part in attribute.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise TypeError(f"{spec} is not callable")
    return target  # type: ignore[no-any-return]


def resolve_account_lookup(spec: str, settings: Settings) -> AccountLookup:
    """Turn an ``account_lookup`` string into a callable, or raise ConfigError."""
    kind, _, rest = spec.partition(":")
    if kind in ("csv", "json") and rest:
        try:
            return FileAccountLookup(rest, kind)
        except (OSError, ValueError) as error:
            raise ConfigError([f"account_lookup: cannot load {kind} file {rest!r}: {error}"]) from error
    if kind in ("sql", "http", "https"):
        raise ConfigError([f"account_lookup: '{kind}:' lookups are not supported by this version yet"])
    if ":" not in spec or not rest:
        raise ConfigError(
            [f"account_lookup: {spec!r} is not 'package.module:function', 'csv:PATH' or 'json:PATH'"]
        )
    try:
        return _import_callable(spec)
    except (ImportError, AttributeError, TypeError) as error:
        raise ConfigError([f"account_lookup: cannot import {spec!r}: {error}"]) from error
