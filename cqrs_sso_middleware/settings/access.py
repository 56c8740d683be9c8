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

    def check(self, problems: Problems) -> None:
        for number, rule in enumerate(self.access_rules, start=1):
            if rule.max_auth_age_seconds is not None and rule.max_auth_age_seconds < 60:
                problems.append(f"access_rules: rule {number}: max_auth_age_seconds must be at least 60")
            for pattern in rule.paths:
                if not pattern.startswith(("/", "re:")):
                    problems.append(f"access_rules: rule {number}: path {pattern!r} must start with / or re:")
                    continue
                try:
                    compile_path_pattern(pattern)
                except re.error as error:
                    problems.append(
                        f"access_rules: rule {number}: path {pattern!r} is not a regular expression ({error})"
                    )
        problems.extend(ClaimHeaders.problems(self.claim_headers))
        for header in self.claim_headers:
            if header.lower().replace("_", "-") in STANDARD_IDENTITY_HEADERS:
                problems.append(f"claim_headers: {header} is an identity header the proxy sets itself")
        for role, label in self.role_labels.items():
            if not isinstance(label, str) or not label.strip():
                problems.append(f"role_labels: the label of {role!r} is empty")
