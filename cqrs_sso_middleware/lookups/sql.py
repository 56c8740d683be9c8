"""Accounts from a database query (``sql:URL`` with ``account_query``; the ``sql`` extra)."""

from __future__ import annotations

from ..core.identity import Account, Identity, clean_roles


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
        roles = row.pop("roles", "")  # a "roles" column: ";"-separated role names
        return Account(account_id, identity.email, row, clean_roles(roles))

    def close(self) -> None:
        self._engine.dispose()
