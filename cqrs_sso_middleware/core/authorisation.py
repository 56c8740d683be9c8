"""Who may go where, once signed in: per-path rules on roles and on how recent the sign-in
is, and claims handed on as headers.

A signed-in person with a CQRS account passes every protected path unless an
``access_rules`` entry says more. Rules are ordered; the **first** whose ``paths`` match the
(normalised) path decides:

* ``roles`` — the person needs **any** of them. Roles are the union of the ID token's
  ``roles`` (Entra app roles), its ``groups`` (group object ids) and the CQRS account's own
  (``User.roles``);
* ``max_auth_age_seconds`` — the sign-in must be no older than this (step-up): an older
  one is sent back to NHSmail with ``prompt=login`` and ``max_age`` (OIDC Core §3.1.2.1).

Paths are matched like ``public_paths`` (anchored globs, ``re:``), on the path every rule
and the app see, read the same way (``security.paths.path_readings``): a path with ``;``
(or ``%3B``) parameters is matched as written **and** as Tomcat, Jetty and Spring serve it
(parameters dropped), and the rule of either applies, so ``/approvals;x`` cannot step around
the rule on ``/approvals/**``; with ``case_insensitive_paths``, ``/APPROVALS/x`` cannot
either.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .identity import User, clean_roles
from .security.paths import compile_path_pattern, path_pattern_regex, path_readings
from .security.request_numbers import MAX_AUTH_AGE_SECONDS, MIN_AUTH_AGE_SECONDS, auth_age

_REFERS_TO_GROUPS = re.compile(r"\\[1-9]|\(\?P=|\(\?\(")


@dataclass(frozen=True)
class AccessRule:
    """One rule: for these paths, these roles (any of) and/or a recent sign-in."""

    paths: tuple[str, ...]
    roles: tuple[str, ...] = ()
    max_auth_age_seconds: int | None = None

    @classmethod
    def from_value(cls, value: object) -> AccessRule:
        """From code (an ``AccessRule`` or a mapping), TOML (a table) or JSON (an object);
        ``ValueError`` says what is wrong."""
        if isinstance(value, AccessRule):
            return value
        if not isinstance(value, Mapping):
            raise ValueError("each rule is a table with paths, and roles and/or max_auth_age_seconds")
        unknown = set(value) - {"paths", "roles", "max_auth_age_seconds"}
        if unknown:
            raise ValueError(f"a rule has unknown keys: {', '.join(sorted(unknown))}")
        paths = _rule_paths(value.get("paths"))
        roles = clean_roles(value.get("roles", ()))
        age = value.get("max_auth_age_seconds")
        if age is not None and (isinstance(age, bool) or not isinstance(age, int) or age < 0):
            raise ValueError("max_auth_age_seconds is a whole number of seconds")
        if not roles and age is None:
            raise ValueError("a rule names roles, max_auth_age_seconds, or both")
        return cls(paths, roles, age)

    def describe(self) -> str:
        parts = []
        if self.roles:
            parts.append("roles " + " or ".join(self.roles))
        if self.max_auth_age_seconds is not None:
            parts.append(f"signed in within {self.max_auth_age_seconds} s")
        return f"{', '.join(self.paths)}: {' and '.join(parts)}"


def _rule_paths(paths: object) -> tuple[str, ...]:
    if isinstance(paths, str):
        paths = [paths]
    if not isinstance(paths, list | tuple) or not paths or not all(isinstance(p, str) and p for p in paths):
        raise ValueError("a rule's paths is a list of path patterns")
    return tuple(paths)


def rules_from_value(value: object) -> tuple[AccessRule, ...]:
    """``access_rules`` from code, TOML (an array of tables) or a variable (a JSON array)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise ValueError(f"is not a JSON array of rules ({error.msg})") from None
    if not isinstance(value, list | tuple):
        raise ValueError("is not a list of rules")
    return tuple(AccessRule.from_value(item) for item in value)


@dataclass(frozen=True, slots=True)
class Allowed:
    pass


@dataclass(frozen=True, slots=True)
class NeedsRole:
    """Signed in, but without any of ``rule.roles``: 403."""

    rule: AccessRule


@dataclass(frozen=True, slots=True)
class NeedsStepUp:
    """Signed in too long ago for this rule: sign in again at NHSmail."""

    rule: AccessRule
    max_age: int


Verdict = Allowed | NeedsRole | NeedsStepUp
ALLOWED = Allowed()


def verdict(rule: AccessRule | None, user: User, auth_time: int, now: float) -> Verdict:
    """What ``rule`` says of ``user``, whose sign-in was at ``auth_time`` (0: unknown)."""
    if rule is None:
        return ALLOWED
    if rule.roles and not user.roles.intersection(rule.roles):
        return NeedsRole(rule)
    age = rule.max_auth_age_seconds
    if age is not None and (not auth_time or now - auth_time > age):
        return NeedsStepUp(rule, age)
    return ALLOWED


class AccessRules:
    """The ``access_rules`` of one deployment, compiled once.

    Every signed-in request asks ``rule_for``, so its answers are remembered per path (a
    bounded table, emptied when full: paths are chosen by clients). The rules never change
    after start-up, so a remembered answer is always the one the rules would give.
    """

    _REMEMBERED = 4096
    _LONGEST_REMEMBERED = 512

    def __init__(self, rules: Iterable[AccessRule], ignore_case: bool = False) -> None:
        self.rules = tuple(rules)
        self._regexes = [
            (rule, tuple(path_pattern_regex(p, ignore_case) for p in rule.paths)) for rule in self.rules
        ]
        self._answers: dict[str, AccessRule | None] = {}
        self._any = _one_regex([regex for _, regexes in self._regexes for regex in regexes], ignore_case)

    def __bool__(self) -> bool:
        return bool(self.rules)

    def rule_for(self, path: str) -> AccessRule | None:
        """The first rule whose paths match ``path`` (query and fragment not included)."""
        try:
            return self._answers[path]
        except KeyError:
            pass
        rule = self._first_match(path)
        if len(path) <= self._LONGEST_REMEMBERED:
            if len(self._answers) >= self._REMEMBERED:
                self._answers.clear()
            self._answers[path] = rule
        return rule

    def _first_match(self, path: str) -> AccessRule | None:
        readings = path_readings(path)
        if self._any is not None and all(self._any.fullmatch(reading) is None for reading in readings):
            return None  # most paths: one regex says no rule is concerned
        for rule, regexes in self._regexes:
            for regex in regexes:
                for reading in readings:
                    if regex.fullmatch(reading) is not None:
                        return rule
        return None

    def shadowed(self) -> list[str]:
        """Warnings for rules an earlier rule always decides first (every probe path of each
        of their glob patterns matches the earlier rule)."""
        warnings = []
        for later, (rule, _) in enumerate(self._regexes):
            for earlier, (first, regexes) in enumerate(self._regexes[:later]):
                probes = [probe for pattern in rule.paths for probe in _probes(pattern)]
                if probes and all(any(r.fullmatch(p) for r in regexes) for p in probes):
                    warnings.append(
                        f"access rule {later + 1} ({rule.describe()}) never decides: "
                        f"rule {earlier + 1} ({first.describe()}) matches its paths first"
                    )
                    break
        return warnings

    def public_overlaps(self, public_patterns: Iterable[str]) -> list[str]:
        """Warnings for public paths that would open part of a rule's paths (a public path
        passes without a session, before any rule is asked)."""
        public = [(pattern, compile_path_pattern(pattern)) for pattern in public_patterns]
        warnings = []
        for number, (rule, regexes) in enumerate(self._regexes, start=1):
            for pattern, match in public:
                # Either way round: a public pattern wider than the rule's, or narrower.
                if any(match(probe) for path in rule.paths for probe in _probes(path)) or any(
                    regex.fullmatch(probe) for probe in _probes(pattern) for regex in regexes
                ):
                    warnings.append(
                        f"public_paths {pattern!r} opens paths of access rule {number} ({rule.describe()}) "
                        "without sign-in: the rule never applies there"
                    )
        return warnings


def _one_regex(regexes: list[re.Pattern[str]], ignore_case: bool = False) -> re.Pattern[str] | None:
    """All patterns as one alternation, to tell in one call whether any matches (``None``
    where they cannot be joined: a ``re:`` with its own global flags, or one that refers to
    its own groups, whose numbers joining would change)."""
    if not regexes or any(_REFERS_TO_GROUPS.search(r.pattern) for r in regexes):
        return None
    joined = "|".join(f"(?{'s' if r.flags & re.DOTALL else ''}:{r.pattern})" for r in regexes)
    try:
        return re.compile(joined, re.IGNORECASE if ignore_case else 0)
    except re.error:
        return None


def _probes(pattern: str) -> list[str]:
    """Paths a glob pattern matches, for the warnings above (``re:`` patterns: none)."""
    if pattern.startswith("re:"):
        return []
    one = pattern.replace("**", "\x00").replace("*", "p7x").replace("\x00", "p7x/q8y")
    many = pattern.replace("**", "p7x").replace("*", "p7x")
    return list(dict.fromkeys([one, many]))


def forward_auth_rule(roles: str | None, max_auth_age: str | None) -> AccessRule | None:
    """A rule from forward-auth's own query (``/oauth2/auth?roles=A,B&max_auth_age=900``),
    so that each nginx ``location`` or Caddy route can carry its own. ``ValueError`` for a
    malformed one, answered 400 (the proxy in front then refuses the request: closed):
    ``max_auth_age`` is read like every number from a request, with the floor of an
    ``access_rules`` entry (60 s; 0 would ask for a sign-in at every request, a loop)."""
    if not roles and not max_auth_age:
        return None
    age = None
    if max_auth_age:
        age = auth_age(max_auth_age)
        if age is None:
            low, high = MIN_AUTH_AGE_SECONDS, MAX_AUTH_AGE_SECONDS
            raise ValueError(f"max_auth_age is a whole number of seconds from {low} to {high}")
    return AccessRule(("/**",), clean_roles((roles or "").split(",")), age)
