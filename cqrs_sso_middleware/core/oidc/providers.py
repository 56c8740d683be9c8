"""The providers of one deployment: one ``RelyingParty`` each, found by name or issuer.

With one provider (the flat settings) everything behaves as it always did: its name is
``nhsmail`` and the sign-in page has one Sign In button. With several, each login attempt
and each session records the name of the provider it is with, and every later step — the
callback, a step-up, sign-out, front- and back-channel logout — talks to that provider
only: an answer from one provider is never checked with another's keys, issuer or client
id (the mix-up attack, RFC 9207 §1; OAuth 2.0 Security BCP, RFC 9700 §4.4).
"""

from __future__ import annotations

from collections.abc import Generator, Sequence

from ..errors import ProviderError
from ..protocol import EffectResult, HttpCall
from .client import RelyingParty


class Providers:
    """The relying parties of one deployment, the first one first."""

    def __init__(self, parties: Sequence[RelyingParty]) -> None:
        if not parties:
            raise ValueError("a deployment needs a provider")
        self.all = tuple(parties)
        self.first = self.all[0]
        self._by_name = {party.name: party for party in self.all}

    @property
    def several(self) -> bool:
        return len(self.all) > 1

    def named(self, name: str) -> RelyingParty | None:
        """The provider called ``name``; ``""`` (an attempt or session from before names
        were recorded) is the first provider."""
        return self._by_name.get(name) if name else self.first

    def audit_fields(self, party: RelyingParty | str) -> dict[str, str]:
        """``{"provider": name}`` for audit events when there are several; with one, the
        events stay as they have always been."""
        if not self.several:
            return {}
        return {"provider": party if isinstance(party, str) else party.name}

    def choices(self) -> list[dict[str, str]]:
        """What the sign-in page offers: one button per provider."""
        return [{"name": party.name, "label": party.label} for party in self.all]

    def by_issuer(self, issuer: str, now: float) -> Generator[HttpCall, EffectResult, RelyingParty | None]:
        """The provider whose issuer is ``issuer`` (as configured, or as its metadata
        announces it); a provider whose metadata cannot be had now is skipped."""
        for party in self.all:
            if party.registration.issuer == issuer:
                return party
        for party in self.all:
            try:
                metadata = yield from party.metadata(now)
            except ProviderError:
                continue
            if metadata.issuer == issuer:
                return party
        return None
