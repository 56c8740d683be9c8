"""``cis2``: NHS Care Identity Service 2 (smartcards, and NHSmail as an AAL2 authenticator).

What CIS2 does its own way:

* **assurance.** The authorization request names the authentication assurance level it
  needs in ``acr_values`` (``AAL2_OR_AAL3_ANY`` unless configured), and the ID token's
  ``acr`` must meet it (OIDC Core §3.1.3.7 point 12: the client checks an ``acr`` it
  asked for). A token without one, or with a lower level, is refused;
* **scopes** ``nhsperson nationalrbacaccess associatedorgs selectedrole`` beside
  ``openid profile email``;
* **roles from UserInfo.** National RBAC roles are in ``nhsid_nrbac_roles`` of the UserInfo
  answer (OIDC Core §5.3); the role the person chose at sign-in is ``selected_roleid``.
  Only the selected role counts — CIS2 asks a person to act in one role at a time — and it
  reaches ``access_rules`` as ``cis2:<role code>`` (``cis2:S8000:G8000:R8000``), as
  ``cis2:<job role>`` (``cis2:R8000``) and as ``cis2:activity:<code>`` for each of its
  activities; ``role_mapping`` turns any of those into a CQRS role name;
* the organisation of the selected role is ``org_code`` (and ``organisation``, its name,
  when UserInfo gives one): the no-account page and the help-desk email name it;
* ``sub`` is the person's UUID at CIS2, the stable id.

The full role lists are not kept: a session holds the selected role only, so cookies stay
small however many roles a person holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from ..identity import Identity
from .base import ProfileRefusal, ProviderProfile, text_claim

DEFAULT_ACR_VALUES = "AAL2_OR_AAL3_ANY"
# The assurance each acr value stands for: a token's acr must be at least the level asked.
ACR_LEVELS = {"AAL1_USERPASS": 1, "AAL2_ANY": 2, "AAL2_OR_AAL3_ANY": 2, "AAL3_ANY": 3}
CIS2_SCOPES = (
    *("openid", "profile", "email", "nhsperson"),
    *("nationalrbacaccess", "associatedorgs", "selectedrole"),
)
# UserInfo claims that are lists of everything a person holds: read, then not kept.
_LISTS = ("nhsid_nrbac_roles", "nhsid_user_orgs", "nhsid_all_roles")
_MAX_ACTIVITIES = 32


class Cis2Profile(ProviderProfile):
    kind: ClassVar[str] = "cis2"
    label: ClassVar[str] = "your NHS Care Identity"
    service: ClassVar[str] = "NHS Care Identity"
    scopes: ClassVar[tuple[str, ...]] = CIS2_SCOPES
    uses_userinfo: ClassVar[bool] = True

    @property
    def acr_values(self) -> str:
        return self.options.acr_values or DEFAULT_ACR_VALUES

    def option_problems(self) -> list[str]:
        if self.acr_values not in ACR_LEVELS:
            return [f"acr_values: {self.acr_values!r} is not one of " + ", ".join(ACR_LEVELS)]
        return []

    def authorization_params(self) -> dict[str, str]:
        return {"acr_values": self.acr_values}

    def refusal(self, claims: Mapping[str, Any]) -> ProfileRefusal | None:
        level = ACR_LEVELS.get(text_claim(claims, "acr"), 0)
        if level < ACR_LEVELS.get(self.acr_values, 3):
            return ProfileRefusal("acr_not_met", "assurance_too_low")
        return None

    def identity(self, claims: Mapping[str, Any], userinfo: Mapping[str, Any] | None = None) -> Identity:
        merged = {**(userinfo or {}), **claims}
        selected = selected_role(merged)
        kept = {k: v for k, v in merged.items() if k not in _LISTS}
        if selected is not None:
            kept["org_code"] = text_claim(selected, "org_code")
            organisation = organisation_name(merged, kept["org_code"])
            if organisation:
                kept["organisation"] = organisation
            kept["cis2_role"] = {
                k: selected[k] for k in ("role_code", "role_name", "org_code") if k in selected
            }
        kept["roles"] = list(role_names(selected))
        return super().identity(kept)

    def stable_id(self, claims: Mapping[str, Any]) -> str:
        return text_claim(claims, "sub")


def selected_role(claims: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The entry of ``nhsid_nrbac_roles`` whose ``person_roleid`` is ``selected_roleid``."""
    wanted = text_claim(claims, "selected_roleid")
    roles = claims.get("nhsid_nrbac_roles")
    if not wanted or not isinstance(roles, list):
        return None
    for role in roles:
        if isinstance(role, dict) and role.get("person_roleid") == wanted:
            return role
    return None


def role_names(role: Mapping[str, Any] | None) -> tuple[str, ...]:
    """``cis2:`` names of one national RBAC role: its code, its job role, its activities."""
    if role is None:
        return ()
    code = text_claim(role, "role_code")
    names = [f"cis2:{code}", f"cis2:{code.rsplit(':', 1)[-1]}"] if code else []
    activities = role.get("activity_codes")
    if isinstance(activities, list):
        names += [f"cis2:activity:{a}" for a in activities[:_MAX_ACTIVITIES] if isinstance(a, str) and a]
    return tuple(dict.fromkeys(names))


def organisation_name(claims: Mapping[str, Any], org_code: str) -> str:
    """The name of organisation ``org_code`` from ``nhsid_user_orgs``, when listed."""
    orgs = claims.get("nhsid_user_orgs")
    if not org_code or not isinstance(orgs, list):
        return ""
    for org in orgs:
        if isinstance(org, dict) and org.get("org_code") == org_code:
            return text_claim(org, "org_name")
    return ""


PROFILE = Cis2Profile
