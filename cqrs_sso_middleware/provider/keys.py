"""The demo provider's signing keys: one signs, every published one verifies (roll-over)."""

from __future__ import annotations

import secrets

from joserfc.jwk import KeySet, RSAKey

from .model import b64url


class SigningKeys:
    signing_key: RSAKey
    published_keys: list[RSAKey]

    @staticmethod
    def new_key() -> RSAKey:
        kid = b64url(secrets.token_bytes(12))
        return RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig", "alg": "RS256"})

    def rotate_keys(self, *, retire_old: bool = False) -> RSAKey:
        """Sign with a new key; keep publishing the old one unless ``retire_old``."""
        self.signing_key = self.new_key()
        self.published_keys = [self.signing_key] if retire_old else [self.signing_key, *self.published_keys]
        return self.signing_key

    def key_set(self) -> KeySet:
        return KeySet(list(self.published_keys))
