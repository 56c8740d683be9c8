"""OpenID provider metadata (OpenID Connect Discovery 1.0) and the issuer it commits us to.

The issuer an ID token must carry is the ``issuer`` of the metadata, which must equal the
configured issuer exactly (Discovery §4.3) — with one explicit exception for Entra ID: an
authority given by domain name (``https://login.microsoftonline.com/nhs.net/v2.0``)
serves metadata that names the tenant by GUID (``…/<tenant-guid>/v2.0``). That GUID issuer
is accepted only when it sits at the same origin, in the same ``/<tenant>/v2.0`` shape, and
the configured tenant segment is a domain name; tokens are then checked against the GUID
issuer, exactly.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..errors import ProviderError

SUPPORTED_SIGNING_ALGORITHMS = ("RS256", "ES256")
_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
_TENANT_PATH = re.compile(r"^/(?P<tenant>[^/]+)/v2\.0/?$")


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


def _is_domain_tenant_alias(configured: str, announced: str) -> bool:
    """True for Entra's "authority by domain, issuer by GUID" pair (see module docstring)."""
    want, got = urlsplit(configured), urlsplit(announced)
    if (want.scheme, want.netloc) != (got.scheme, got.netloc):
        return False
    want_path, got_path = _TENANT_PATH.match(want.path), _TENANT_PATH.match(got.path)
    if not want_path or not got_path:
        return False
    tenant = want_path["tenant"]
    return "." in tenant and not _GUID.match(tenant) and bool(_GUID.match(got_path["tenant"]))


def _endpoint(document: Mapping[str, Any], name: str, allow_http: bool) -> str:
    value = document.get(name)
    if not isinstance(value, str) or not value:
        raise ProviderError(f"provider metadata has no {name}")
    scheme = urlsplit(value).scheme
    if scheme != "https" and not (allow_http and scheme == "http"):
        raise ProviderError(f"provider metadata {name} is not https: {value!r}")
    return value


def parse_provider_metadata(body: bytes, configured_issuer: str) -> ProviderMetadata:
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
    if issuer != configured_issuer and not _is_domain_tenant_alias(configured_issuer, issuer):
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
    return ProviderMetadata(
        issuer=issuer,
        authorization_endpoint=_endpoint(document, "authorization_endpoint", allow_http),
        token_endpoint=_endpoint(document, "token_endpoint", allow_http),
        jwks_uri=_endpoint(document, "jwks_uri", allow_http),
        end_session_endpoint=end_session if isinstance(end_session, str) else None,
        signing_algorithms=algorithms,
        token_auth_methods=tuple(str(m) for m in methods),
    )
