"""Who may go where once signed in: per-path rules, the words for roles, and the claims an
upstream is given as headers (``core/authorisation.py`` does the deciding)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from ..core.authorisation import AccessRule
from ..core.claim_headers import ClaimHeaders
from ..core.security.headers import STANDARD_IDENTITY_HEADERS
from ..core.security.paths import compile_path_pattern
from .schema_base import Problems, setting


@dataclass(frozen=True, kw_only=True)
class AccessSettings:
    """Per-path rules on roles and on a recent sign-in, and claims handed on as headers."""

    access_rules: tuple[AccessRule, ...] = setting(
        (),
        "ordered rules, the first whose `paths` match decides: `roles` (any of) and/or `max_auth_age_seconds` (step-up); TOML: `[[access_rules]]` tables; variable: a JSON array — see docs/authorisation.md",
    )
    role_labels: Mapping[str, str] = setting(
        factory=dict,
        text='role → the words the 403 page uses for it (`"CQRS.Approver" = "approver"`); TOML: a table; variable: a JSON object',
    )
    claim_headers: Mapping[str, str] = setting(
        factory=dict,
        text="header → claim the proxy and forward-auth send upstream: an ID token claim, `roles`, or `account.id` / `account.email` / `account.roles` / `account.<attribute>`; TOML: a table; variable: a JSON object",
    )

    api_paths: tuple[str, ...] = setting(
        (),
        "paths of the CQRS API: a request with `Authorization: Bearer <access token>` is let through on the token alone (no cookie, no sign-in page, no redirect; 401 with `WWW-Authenticate: Bearer` otherwise) — patterns as in `public_paths`; see docs/api-clients.md",
    )
    api_audiences: tuple[str, ...] = setting(
        (),
        "what an API access token's `aud` must name: the CQRS API's application ID URI (`api://…`) and/or its client id in NHSmail; never the sign-in client's id",
    )
    api_scopes: tuple[str, ...] = setting(
        (),
        "a person's token (`scp`) must grant one of these scopes (e.g. `Reports.Read`); empty: any scope. Application tokens carry app roles instead, which `access_rules` check",
    )

    def check(self, problems: Problems) -> None:
        self._check_api(problems)
        for number, rule in enumerate(self.access_rules, start=1):
            if rule.max_auth_age_seconds is not None and rule.max_auth_age_seconds < 60:
                problems.append(f"access_rules: rule {number}: max_auth_age_seconds must be at least 60")
            for pattern in rule.paths:
                problems.extend(path_pattern_problems(f"access_rules: rule {number}: path", pattern))
        problems.extend(ClaimHeaders.problems(self.claim_headers))
        for header in self.claim_headers:
            if header.lower().replace("_", "-") in STANDARD_IDENTITY_HEADERS:
                problems.append(f"claim_headers: {header} is an identity header the proxy sets itself")
        for role, label in self.role_labels.items():
            if not isinstance(label, str) or not label.strip():
                problems.append(f"role_labels: the label of {role!r} is empty")

    def _check_api(self, problems: Problems) -> None:
        if self.api_paths and not self.api_audiences:
            problems.append("api_audiences: required with api_paths (the CQRS API's application ID URI)")
        for pattern in self.api_paths:
            problems.extend(path_pattern_problems("api_paths:", pattern))


def path_pattern_problems(where: str, pattern: str) -> list[str]:
    """What is wrong with one path pattern of ``access_rules`` or ``api_paths``."""
    if not pattern.startswith(("/", "re:")):
        return [f"{where} {pattern!r} must start with / or re:"]
    try:
        compile_path_pattern(pattern)
    except re.error as error:
        return [f"{where} {pattern!r} is not a regular expression ({error})"]
    return []
