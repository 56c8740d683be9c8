"""``entra``: Microsoft Entra ID v2.0, which NHSmail is.

What Entra does its own way, and so is decided here rather than in the protocol core:

* the email comes from the first present of ``email``, ``preferred_username`` and ``upn``
  (Entra sends no ``email`` for accounts without a mailbox address); Entra warns that these
  are mutable, so ``oid`` (with ``tid``) is the stable id;
* roles are the app roles in ``roles``; ``groups`` holds group object ids;
* the groups overage (OIDC Core §5.6.2 distributed claims in place of ``groups``) is
  refused: rules on groups could not be decided;
* an authority named by domain (``…/nhs.net/v2.0``) announces its issuer by tenant GUID
  (``issuer_alias``);
* AADSTS codes that mean "this deployment is not accepted as configured", and the
  ``access_denied`` + ``error_subcode=cancel`` pair of a person who pressed Cancel.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import urlsplit

from ..oidc.provider_errors import AnswerRules
from .base import ProfileRefusal, ProviderProfile, text_claim

_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
_TENANT_PATH = re.compile(r"^/(?P<tenant>[^/]+)/v2\.0/?$")

# Entra's codes for a deployment the tenant does not accept as configured (see
# docs/troubleshooting.md for what to do about each).
MISCONFIGURATION_CODES = frozenset(
    {
        7000215,  # invalid client secret
        7000222,  # expired client secret
        700016,  # application (client id) not found in the directory
        50011,  # redirect URI not registered for the application
        90072,  # the account is not in the tenant (a B2B/tenant set-up problem)
        65001,  # consent not given to the application
        700027,  # client assertion signature invalid, or certificate not registered
        50012,  # authentication failed: a client credential not valid
        90094,  # admin consent required
    }
)
ENTRA_ANSWERS = AnswerRules(MISCONFIGURATION_CODES, cancel=("access_denied", "cancel"))


def groups_overage(claims: Mapping[str, Any]) -> bool:
    """Too many groups for a token: ``groups`` is replaced by ``_claim_names`` /
    ``_claim_sources`` pointing at Microsoft Graph (OIDC Core §5.6.2)."""
    names = claims.get("_claim_names")
    return isinstance(names, dict) and "groups" in names and "groups" not in claims


def is_domain_tenant_alias(configured: str, announced: str) -> bool:
    """True for the "authority by domain, issuer by GUID" pair: same origin, the same
    ``/<tenant>/v2.0`` shape, a domain name configured and a GUID announced."""
    want, got = urlsplit(configured), urlsplit(announced)
    if (want.scheme, want.netloc) != (got.scheme, got.netloc):
        return False
    want_path, got_path = _TENANT_PATH.match(want.path), _TENANT_PATH.match(got.path)
    if not want_path or not got_path:
        return False
    tenant = want_path["tenant"]
    return "." in tenant and not _GUID.match(tenant) and bool(_GUID.match(got_path["tenant"]))


class EntraProfile(ProviderProfile):
    kind: ClassVar[str] = "entra"
    label: ClassVar[str] = "NHSmail"
    service: ClassVar[str] = "NHSmail"
    answers: ClassVar[AnswerRules] = ENTRA_ANSWERS
    email_claims: ClassVar[tuple[str, ...]] = ("email", "preferred_username", "upn")

    def issuer_alias(self, configured: str, announced: str) -> bool:
        return is_domain_tenant_alias(configured, announced)

    def tenant_of(self, issuer: str) -> str:
        """``https://login.microsoftonline.com/<tenant id>/v2.0``: the tenant id."""
        parts = issuer.rstrip("/").split("/")
        return parts[-2] if len(parts) >= 2 and _GUID.fullmatch(parts[-2]) else ""

    def refusal(self, claims: Mapping[str, Any]) -> ProfileRefusal | None:
        if groups_overage(claims):
            return ProfileRefusal("groups_overage", "too_many_groups")
        return None

    def stable_id(self, claims: Mapping[str, Any]) -> str:
        return text_claim(claims, "oid")


PROFILE = EntraProfile
