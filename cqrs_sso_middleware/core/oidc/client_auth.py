"""``private_key_jwt`` client authentication (OIDC Core §9, RFC 7523 §2.2 and §3).

How Entra ID's certificate credentials work: instead of a shared secret, the client signs a
short-lived JWT with its private key; the provider checks it with the registered public key
or certificate, found by its thumbprint in the header. Microsoft's current guidance
("Microsoft identity platform application authentication certificate credentials") is
``PS256`` (RSASSA-PSS, RFC 7518 §3.5) with the SHA-256 thumbprint in ``x5t#S256``; the
older form, ``RS256`` with the SHA-1 thumbprint in ``x5t`` (RFC 7515 §4.1.7), stays
available as ``client_assertion_algorithm = "RS256"`` for providers without PS256.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from joserfc import jwt
from joserfc.jwk import RSAKey

from ..errors import ConfigError

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME_SECONDS = 120


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


AssertionAlgorithm = Literal["PS256", "RS256"]


@dataclass(frozen=True)
class ClientAssertionSigner:
    key: RSAKey
    thumbprints: dict[str, str]
    algorithm: AssertionAlgorithm = "PS256"

    @classmethod
    def from_pem(cls, pem: str, algorithm: AssertionAlgorithm = "PS256") -> ClientAssertionSigner:
        """Load the private key (and certificate, if present) from one PEM text."""
        try:
            key = RSAKey.import_key(pem)
        except Exception as error:  # joserfc/cryptography raise several types for bad PEM
            raise ConfigError(
                [f"private_key_file: not a usable RSA private key ({type(error).__name__})"]
            ) from error
        if not key.is_private:
            raise ConfigError(["private_key_file: holds a public key; the private key is needed"])
        thumbprints: dict[str, str] = {}
        if "-----BEGIN CERTIFICATE-----" in pem:
            certificate = x509.load_pem_x509_certificate(pem.encode())
            der = certificate.public_bytes(Encoding.DER)
            sha1, sha256 = hashes.Hash(hashes.SHA1()), hashes.Hash(hashes.SHA256())  # noqa: S303 - x5t is SHA-1 by definition (RFC 7515 §4.1.7)
            sha1.update(der)
            sha256.update(der)
            thumbprints = {"x5t": _b64(sha1.finalize()), "x5t#S256": _b64(sha256.finalize())}
        return cls(key, thumbprints, algorithm)

    def assertion(self, client_id: str, token_endpoint: str, now: float) -> str:
        """RFC 7523 §3: iss = sub = client id, aud = the token endpoint, short exp, unique jti."""
        issued = int(now)
        header: dict[str, str] = {"alg": self.algorithm, "typ": "JWT"}
        if self.algorithm == "PS256" and self.thumbprints:
            header["x5t#S256"] = self.thumbprints["x5t#S256"]
        elif self.thumbprints:
            header.update(self.thumbprints)
            header["kid"] = self.thumbprints["x5t"]
        elif self.key.kid:
            header["kid"] = self.key.kid
        claims = {
            "iss": client_id,
            "sub": client_id,
            "aud": token_endpoint,
            "jti": secrets.token_urlsafe(24),
            "iat": issued,
            "nbf": issued,
            "exp": issued + ASSERTION_LIFETIME_SECONDS,
        }
        return jwt.encode(header, claims, self.key, algorithms=[self.algorithm])
