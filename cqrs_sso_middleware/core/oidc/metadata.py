"""OpenID provider metadata (OpenID Connect Discovery 1.0) and the issuer it commits us to.

The issuer an ID token must carry is the ``issuer`` of the metadata, which must equal the
configured issuer exactly (Discovery §4.3) — unless the provider's profile names an
exception (Entra's authority by domain, issuer by tenant GUID: ``profiles.entra``); tokens
are then checked against the announced issuer, exactly.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..errors import ProviderError

SUPPORTED_SIGNING_ALGORITHMS = ("RS256", "ES256")


def discovery_url(issuer: str) -> str:
    """OIDC Discovery §4.1: the issuer with ``/.well-known/openid-configuration`` appended."""
    return issuer.rstrip("/") + "/.well-known/openid-configuration"


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    end_session_endpoint: str | None
    signing_algorithms: tuple[str, ...]
    token_auth_methods: tuple[str, ...]
    userinfo_endpoint: str | None = None
    # RFC 9207 §3: the provider sends ``iss`` with every authorization response.
    sends_iss_in_response: bool = False


def _endpoint(document: Mapping[str, Any], name: str, allow_http: bool) -> str:
    value = document.get(name)
    if not isinstance(value, str) or not value:
        raise ProviderError(f"provider metadata has no {name}")
    scheme = urlsplit(value).scheme
    if scheme != "https" and not (allow_http and scheme == "http"):
        raise ProviderError(f"provider metadata {name} is not https: {value!r}")
    return value


def _never_alias(configured: str, announced: str) -> bool:
    return False


def parse_provider_metadata(
    body: bytes, configured_issuer: str, issuer_alias: Callable[[str, str], bool] = _never_alias
) -> ProviderMetadata:
    """Validate a discovery document fetched from ``discovery_url(configured_issuer)``."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise ProviderError("provider metadata is not JSON") from error
    if not isinstance(document, dict):
        raise ProviderError("provider metadata is not a JSON object")
    issuer = document.get("issuer")
    if not isinstance(issuer, str):
        raise ProviderError("provider metadata has no issuer")
    if issuer != configured_issuer and not issuer_alias(configured_issuer, issuer):
        raise ProviderError(
            f"provider metadata names issuer {issuer!r}, configured issuer is "
            f"{configured_issuer!r} (OIDC Discovery §4.3 requires them to be identical)"
        )
    # Plain http endpoints only when the configured issuer itself is http (loopback demo).
    allow_http = urlsplit(configured_issuer).scheme == "http"
    announced = document.get("id_token_signing_alg_values_supported") or ["RS256"]
    algorithms = tuple(a for a in SUPPORTED_SIGNING_ALGORITHMS if a in announced)
    if not algorithms:
        raise ProviderError(f"provider signs ID tokens only with {announced!r}; need RS256/ES256")
    end_session = document.get("end_session_endpoint")
    methods = document.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
    userinfo = document.get("userinfo_endpoint")
    return ProviderMetadata(
        issuer=issuer,
        authorization_endpoint=_endpoint(document, "authorization_endpoint", allow_http),
        token_endpoint=_endpoint(document, "token_endpoint", allow_http),
        jwks_uri=_endpoint(document, "jwks_uri", allow_http),
        end_session_endpoint=end_session if isinstance(end_session, str) else None,
        signing_algorithms=algorithms,
        token_auth_methods=tuple(str(m) for m in methods),
        userinfo_endpoint=_endpoint(document, "userinfo_endpoint", allow_http) if userinfo else None,
        sends_iss_in_response=document.get("authorization_response_iss_parameter_supported") is True,
    )
