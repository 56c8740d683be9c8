"""An example ``account_lookup``: point CQRS_SSO_ACCOUNT_LOOKUP at ``examples.accounts:lookup``.

A real deployment asks the CQRS user store. The lookup gets the email *and* the Entra
object id (``identity.object_id``); store the object id at first match and compare it later,
so an address re-assigned to another person cannot take the account over.
"""

from __future__ import annotations

from cqrs_sso_middleware import Account, Identity

CQRS_ACCOUNTS = {
    "gp.user@nhs.net": Account("CQRS-0001", "gp.user@nhs.net", {"organisation": "Demo Surgery (Y00001)"}),
}


def lookup(identity: Identity) -> Account | None:
    """Return the CQRS account for this person, or None (step 5 of the user guide). Raise on outages."""
    return CQRS_ACCOUNTS.get(identity.email)
