"""How the provider's token endpoint knows which application is calling: a client secret
(``client_secret_basic``/``_post``) or a certificate (``private_key_jwt``, RFC 7523), with
Entra's AADSTS answers when it cannot tell. Demo and tests only."""

from __future__ import annotations

import base64
import hmac
from collections.abc import Callable, Mapping
from urllib.parse import unquote

from joserfc import jwt
from starlette.responses import Response

from .model import ASSERTION_TYPE, DemoClient, entra_error, public_key_of


class ClientAuthentication:
    def __init__(
        self, clients: Mapping[str, DemoClient], token_endpoint: str, clock: Callable[[], float]
    ) -> None:
        self.clients = clients
        self.token_endpoint = token_endpoint
        self.clock = clock
        self.spent: set[str] = set()  # client assertion jtis, single use
        self.algorithms: list[str] = []  # of each accepted client assertion, for tests

    def authenticate(self, authorization: str, form: dict[str, str]) -> DemoClient | Response:
        """The client, or Entra's answer for a client that cannot be authenticated."""
        client_id, secret = form.get("client_id", ""), form.get("client_secret")
        header = authorization
        if header.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(header[6:], validate=True).decode()
            except ValueError:
                return entra_error(401, "invalid_client", 7000216)
            user, _, password = decoded.partition(":")
            client_id, secret = unquote(user), unquote(password)
        if not client_id:
            return entra_error(400, "invalid_request", 900144)
        client = self.clients.get(client_id)
        if client is None:
            return entra_error(400, "unauthorized_client", 700016, client_id=client_id)
        if form.get("client_assertion_type") == ASSERTION_TYPE:
            return self._assertion_client(client, form.get("client_assertion", ""))
        if secret is None:
            return entra_error(401, "invalid_client", 7000216)
        if not hmac.compare_digest(client.client_secret.encode(), secret.encode()):
            return entra_error(401, "invalid_client", 7000215)
        if client.secret_expired:
            return entra_error(401, "invalid_client", 7000222)
        return client

    def _assertion_client(self, client: DemoClient, assertion: str) -> DemoClient | Response:
        """RFC 7523 §3: a client assertion signed with the registered certificate's key,
        PS256 (Entra's current guidance) or RS256; iss = sub = client id, aud = this token
        endpoint, not expired, its jti never seen before."""
        if not client.certificate_pem:
            return entra_error(401, "invalid_client", 700027)
        try:
            token = jwt.decode(
                assertion, public_key_of(client.certificate_pem), algorithms=["PS256", "RS256"]
            )
        except Exception:  # joserfc raises several kinds for a bad signature or format
            return entra_error(401, "invalid_client", 700027)
        claims, now = token.claims, self.clock()
        if (
            claims.get("iss") != client.client_id
            or claims.get("sub") != client.client_id
            or claims.get("aud") != self.token_endpoint
            or not isinstance(claims.get("exp"), int)
            or claims["exp"] <= now
            or claims.get("jti") in self.spent
        ):
            return entra_error(401, "invalid_client", 700027)
        self.spent.add(str(claims.get("jti")))
        self.algorithms.append(str(token.header.get("alg")))
        return client
