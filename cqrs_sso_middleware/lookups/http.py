"""Accounts from a JSON endpoint (``http(s)://…{email}…``)."""

from __future__ import annotations

from urllib.parse import quote

from ..core.identity import Account, Identity, clean_roles


class HTTPAccountLookup:
    """Accounts from a JSON endpoint; ``{email}`` in the URL is the URL-encoded address."""

    def __init__(self, url_template: str, timeout: float) -> None:
        import httpx

        self._template = url_template
        self._client = httpx.Client(timeout=timeout, follow_redirects=False)

    def __call__(self, identity: Identity) -> Account | None:
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
        attributes = {str(k): str(v) for k, v in data.items() if k not in {"account_id", "email", "roles"}}
        roles = data.get("roles", ())  # a JSON array of role names (or one ";"-separated string)
        return Account(
            str(data.get("account_id") or identity.email), identity.email, attributes, clean_roles(roles)
        )

    def close(self) -> None:
        self._client.close()
