"""``cqrs-sso check-config``: everything a deployment needs, proven before anybody signs in.

In order, stopping at the first step that fails (exit 1, a sentence on stderr each):

1. the settings, and what a start builds from them (lookup, key, store) — every problem in
   one pass (``runtime.Runtime.load``), and a warning for each ``CQRS_SSO_*`` variable that
   names no setting;
2. the provider's metadata (OIDC Discovery 1.0 §4), checked against the issuer;
3. the client credentials, without a person: a token request with the configured client
   authentication and an authorization code that cannot be valid
   (``RelyingParty.credential_probe``). ``invalid_grant`` means the provider accepted the
   client and refused only the code; ``invalid_client`` and Entra's AADSTS codes mean it
   did not, and the provider's own words are printed.

Nothing here is written anywhere, and no secret is printed.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from .core.authorisation import AccessRules
from .core.errors import ProviderError
from .core.interpreter import run_sync
from .core.oidc.client import RelyingParty, credential_verdict
from .core.oidc.metadata import ProviderMetadata
from .core.protocol import HttpFailure, HttpReply
from .core.security.paths import extension_style, too_broad
from .performers import SyncEffects
from .runtime import Runtime, load_or_explain
from .settings import Settings


def check_config(config_file: str | None, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    for warning in Settings.unknown_variables():
        print(f"config warning: {warning}", file=err)
    runtime = load_or_explain(config_file)
    if runtime is None:
        return 1
    try:
        _describe(runtime.settings, out, err)
        for party in runtime.providers.all:
            if runtime.providers.several:
                print(
                    f"provider:      {party.name} ({party.profile.kind}), button "
                    f'"Sign in with {party.label}"',
                    file=out,
                )
            _describe_provider(party, out)
            metadata = _metadata(runtime, party, err)
            if metadata is None:
                return 1
            print(f"provider ok:   token endpoint {metadata.token_endpoint}", file=out)
            if not _credentials(runtime, party, metadata, out, err):
                return 1
        proxy = runtime.settings.proxy
        if proxy.upstream:
            print(f"proxy:         {proxy.listen} -> {proxy.upstream}", file=out)
        return 0
    finally:
        runtime.close()


def _describe_provider(party: RelyingParty, out: TextIO) -> None:
    provider = party.registration
    print(f"issuer:        {provider.issuer}", file=out)
    print(f"client id:     {provider.client_id}", file=out)
    where = "NHSmail" if provider.profile.kind == "entra" else "the provider"
    print(f"redirect URI:  {party.redirect_uri}  (register this with {where})", file=out)
    method = str(provider.token_auth_method)
    if provider.token_auth_method == "private_key_jwt":  # noqa: S105 - a method name
        method += f" ({provider.assertion_algorithm})"
    print(f"token auth:    {method}", file=out)


def _describe(settings: Settings, out: TextIO, err: TextIO) -> None:
    site = settings.site
    print(f"session store: {settings.session.display_store}", file=out)
    rules = AccessRules(settings.access.access_rules)
    for number, rule in enumerate(rules.rules, start=1):
        print(f"access rule {number}: {rule.describe()}", file=out)
    for warning in [*rules.shadowed(), *rules.public_overlaps(site.public_paths)]:
        print(f"warning: {warning}", file=err)
    for pattern in site.public_paths:
        if too_broad(pattern):
            print(
                f"warning: public_paths pattern {pattern!r} opens the site root or every page "
                "without sign-in; '*' stays within one segment, '**' crosses them",
                file=err,
            )
        elif extension_style(pattern):
            print(
                f"warning: public_paths pattern {pattern!r} opens any path by its ending (such as "
                "'/admin.css' under any folder); name the folder instead, e.g. '/static/**'",
                file=err,
            )


def _metadata(runtime: Runtime, party: RelyingParty, err: TextIO) -> ProviderMetadata | None:
    issuer = party.registration.issuer
    try:
        metadata: ProviderMetadata = run_sync(party.metadata(time.time()), SyncEffects(runtime))
        return metadata
    except ProviderError as error:
        print(f"provider error: cannot load metadata from {issuer}: {error}", file=err)
        return None


def _credentials(
    runtime: Runtime, party: RelyingParty, metadata: ProviderMetadata, out: TextIO, err: TextIO
) -> bool:
    provider = party.registration
    reply = runtime.provider_http.call(party.credential_probe(metadata, time.time()))
    if isinstance(reply, HttpFailure):
        print(f"provider error: token endpoint: {reply.reason}", file=err)
        return False
    assert isinstance(reply, HttpReply)
    verdict = credential_verdict(reply, party.profile.answers)
    if verdict.accepted:
        print(
            f"credentials ok: the provider accepted client {provider.client_id!r} "
            f"({provider.token_auth_method})",
            file=out,
        )
        return True
    answer = verdict.answer
    if answer is None:
        print(f"credentials not proven: the token endpoint answered {verdict.detail}", file=err)
        return False
    code = f" AADSTS{answer.aadsts}" if answer.aadsts else ""
    print(
        f"credentials refused: the provider answered {answer.error}{code}: {answer.description or '-'}",
        file=err,
    )
    if answer.meaning == "misconfigured":
        print(
            "  the client id, secret or certificate is not what the provider has registered "
            "(docs/troubleshooting.md lists what each AADSTS code means)",
            file=err,
        )
    return False
