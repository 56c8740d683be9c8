"""Typed errors, split by who was at fault (the h11 habit).

* ``ConfigError`` — the deployer's configuration is wrong; raised at start-up, never later.
* ``ProviderError`` — the identity provider (or the network to it) misbehaved.
* ``ProviderMisconfigured`` — the provider refused this deployment's credentials or set-up.
* ``TokenRejected`` — an ID token failed validation; ``reason`` is a short stable code for
  the audit log and tests, never shown to users with untrusted detail.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .oidc.provider_errors import ProviderAnswer


class SSOError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(SSOError):
    """Invalid configuration. ``problems`` holds one human-readable line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class ProviderError(SSOError):
    """The OpenID provider was unreachable, slow, or answered something unusable."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class ProviderMisconfigured(SSOError):
    """The provider answered that it does not accept this deployment as configured (a
    wrong secret, an unknown client id…): a deployer must act. ``answer`` is what it said."""

    def __init__(self, answer: ProviderAnswer) -> None:
        self.answer = answer
        super().__init__(str(answer))


class TokenRejected(SSOError):
    """An ID token failed one of the checks of OIDC Core §3.1.3.7."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class UnknownSigningKey(TokenRejected):
    """The token names a ``kid`` the cached JWKS does not hold (maybe a key roll-over)."""

    def __init__(self, kid: str | None) -> None:
        super().__init__("unknown_kid", f"kid={kid!r}")
        self.kid = kid
