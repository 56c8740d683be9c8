"""Access tokens that API clients present (RFC 6750 ``Authorization: Bearer``): the checks
after the signature (``tokens.verify_signature``, the provider's own keys and algorithms).

An Entra v2 access token for the CQRS API is a JWT that the API validates itself, as it
would an ID token, against what *this API* expects (RFC 9068 §4 and Entra's own rules for
resource servers):

* ``iss`` is the provider's issuer exactly, and ``tid`` (when the provider has tenants)
  that issuer's tenant: a token from another tenant is refused even where ``iss`` was
  made to look alike;
* ``aud`` names one of ``api_audiences`` (the API's application ID URI or client id),
  never the sign-in client: an ID token for the CQRS web app is not a key to its API;
* ``exp``, ``nbf`` and ``iat`` within the clock leeway (RFC 7519 §4.1.4, §4.1.5);
* a token that carries what only an ID token carries (``nonce``, ``at_hash``, ``c_hash``)
  is refused, so an ID token issued to a client that is also listed as an audience is
  still not taken for an access token;
* it is a person's delegated token (``scp``: space-separated scopes, one of
  ``api_scopes`` when set) or an application's (client credentials: ``roles`` and no
  ``scp``; Entra marks it ``idtyp=app``). A token with neither grants nothing.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import TokenRejected
from ..identity import clean_roles

# Claims only an ID token carries (OIDC Core §2, §3.1.3.6, §3.3.2.11).
_ID_TOKEN_ONLY = ("nonce", "at_hash", "c_hash")


@dataclass(frozen=True, slots=True)
class AccessTokenRules:
    """What one API expects of the access tokens of one provider."""

    issuer: str
    audiences: frozenset[str]
    tenant_id: str = ""  # "" : the provider has no tenants (not Entra)
    scopes: frozenset[str] = frozenset()  # one of them in ``scp``; empty: any scope
    leeway_seconds: int = 180


@dataclass(frozen=True, slots=True)
class ApiCaller:
    """Who presented a valid access token: a person (``scopes`` granted to the client
    acting for them) or an application (``application`` is its client id)."""

    claims: Mapping[str, Any]
    scopes: frozenset[str]
    roles: tuple[str, ...]
    application: str = ""


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TokenRejected(f"invalid_{name}", f"{name} is not a number")
    return float(value)


def _check_times(claims: Mapping[str, Any], leeway: int, now: float) -> None:
    expires = _number(claims, "exp")
    if expires is None:
        raise TokenRejected("missing_exp")
    if now - leeway >= expires:
        raise TokenRejected("expired", f"exp={expires}")
    not_before = _number(claims, "nbf")
    if not_before is not None and not_before > now + leeway:
        raise TokenRejected("not_yet_valid", f"nbf={not_before}")
    issued = _number(claims, "iat")
    if issued is not None and issued > now + leeway:
        raise TokenRejected("issued_in_future", f"iat={issued}")


def _audiences(claims: Mapping[str, Any]) -> Collection[Any]:
    audience = claims.get("aud")
    return [audience] if isinstance(audience, str) else audience if isinstance(audience, list) else []


def check_access_token_claims(claims: Mapping[str, Any], rules: AccessTokenRules, now: float) -> ApiCaller:
    """The caller, from the claims of a token whose signature is verified; else
    ``TokenRejected`` naming the first rule it breaks."""
    _check_whose(claims, rules)
    _check_times(claims, rules.leeway_seconds, now)
    for name in _ID_TOKEN_ONLY:
        if name in claims:
            raise TokenRejected("id_token", f"an ID token ({name}), not an access token")
    return _caller(claims, rules)


def _check_whose(claims: Mapping[str, Any], rules: AccessTokenRules) -> None:
    """Issued by this provider, in its tenant, for this API."""
    if claims.get("iss") != rules.issuer:
        raise TokenRejected("wrong_issuer", f"iss={claims.get('iss')!r}")
    if rules.tenant_id and claims.get("tid") != rules.tenant_id:
        raise TokenRejected("wrong_tenant", f"tid={claims.get('tid')!r}")
    if not any(isinstance(a, str) and a in rules.audiences for a in _audiences(claims)):
        raise TokenRejected("wrong_audience", f"aud={claims.get('aud')!r}")


def _caller(claims: Mapping[str, Any], rules: AccessTokenRules) -> ApiCaller:
    """A person's delegated token (``scp``) or an application's (roles, no ``scp``)."""
    scope = claims.get("scp")
    if scope is not None and not isinstance(scope, str):
        raise TokenRejected("invalid_scp", "scp is not a string")
    scopes = frozenset((scope or "").split())
    roles = clean_roles(claims.get("roles", ()))
    if scopes:
        if rules.scopes and not scopes & rules.scopes:
            raise TokenRejected("insufficient_scope", f"scp={scope!r}")
        return ApiCaller(claims, scopes, roles)
    application = claims.get("azp") or claims.get("appid")
    if not roles or not isinstance(application, str) or not application:
        # Neither a person's delegated token nor an application's: it grants nothing here.
        raise TokenRejected("insufficient_scope", "no scp, and no roles of an application")
    return ApiCaller(claims, scopes, roles, application)
