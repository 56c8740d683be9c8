"""``cqrs-sso new-secret`` and ``cqrs-sso certificate``: the credentials a deployment needs.

A certificate credential (``private_key_jwt``, RFC 7523) is what NHSmail/Entra should be
given rather than a client secret: the key never leaves the server, and the certificate
(the public part) is what the helpdesk uploads to the app registration. Entra identifies
it by its thumbprint: SHA-256 in ``x5t#S256`` with PS256 assertions (the default), SHA-1 in
``x5t`` with RS256 ones.
"""

from __future__ import annotations

import base64
import datetime
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

KEY_FILE = "cqrs-sso-key.pem"
CERTIFICATE_FILE = "cqrs-sso-certificate.pem"


def new_secret() -> str:
    """A key for ``secret_keys``: 48 random bytes, URL-safe base64 (64 characters)."""
    return secrets.token_urlsafe(48)


@dataclass(frozen=True)
class Credential:
    key_file: Path
    certificate_file: Path
    thumbprint_sha1: str  # as Entra shows it: upper-case hex
    x5t: str  # the same, base64url: the RS256 assertion header's x5t
    x5t_s256: str  # the SHA-256 thumbprint, base64url: the PS256 assertion header's x5t#S256


def make_certificate(directory: Path, common_name: str = "cqrs-sso", days: int = 730) -> Credential:
    """An RSA-2048 key and a self-signed certificate in ``directory``; never overwrites."""
    directory.mkdir(parents=True, exist_ok=True)
    key_path, certificate_path = directory / KEY_FILE, directory / CERTIFICATE_FILE
    for path in (key_path, certificate_path):
        if path.exists():
            raise FileExistsError(f"{path} exists: refusing to overwrite a credential")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    certificate_pem = certificate.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # The key file holds the certificate too, so the middleware can send its thumbprint.
    descriptor = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(key_pem + certificate_pem)
    certificate_path.write_bytes(certificate_pem)
    digest = certificate.fingerprint(hashes.SHA1())  # noqa: S303 - Entra names certificates by SHA-1
    return Credential(
        key_path,
        certificate_path,
        digest.hex().upper(),
        base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii"),
        base64.urlsafe_b64encode(certificate.fingerprint(hashes.SHA256())).rstrip(b"=").decode("ascii"),
    )
