"""Authorisation in the core, with no network: roles from every source, per-path rules in
order, step-up with auth_time (OIDC Core §3.1.3.7 point 13), the groups overage, claims
into headers, and the warnings check-config gives."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from cqrs_sso_middleware import Account, Identity, Runtime, Settings, User
from cqrs_sso_middleware.core.authorisation import (
    AccessRule,
    AccessRules,
    Allowed,
    NeedsRole,
    NeedsStepUp,
    forward_auth_rule,
    rules_from_value,
    verdict,
)
from cqrs_sso_middleware.core.claim_headers import ClaimHeaders
from cqrs_sso_middleware.core.errors import ConfigError, TokenRejected
from cqrs_sso_middleware.core.oidc.tokens import auth_time_of
from cqrs_sso_middleware.core.protocol import LookupReturned, PassThrough, Respond
from cqrs_sso_middleware.core.security.paths import compile_path_pattern
from cqrs_sso_middleware.lookups.files import FileAccountLookup

from .test_flow import BASE, Browser, Clock, ScriptedProvider

RULES = (
    {"paths": ["/approvals/**"], "roles": ["CQRS.Approver"]},
    {"paths": ["/admin/**", "/admin"], "roles": ["CQRS.Admin"]},
    {"paths": ["/declarations/**"], "max_auth_age_seconds": 900},
)


def person(claims: dict[str, Any] | None = None, roles: tuple[str, ...] = ()) -> User:
    identity = Identity("gp.user@nhs.net", "sub", "iss", "oid-1", "tid", "Dr Gita Patel", claims or {})
    return User(identity, Account("CQRS-0001", "gp.user@nhs.net", {}, roles))


# -- roles -----------------------------------------------------------------------------------------


def test_roles_are_the_union_of_app_roles_groups_and_the_accounts_own() -> None:
    user = person({"roles": ["CQRS.Approver"], "groups": ["6f2c…group-id"]}, roles=("CQRS.Practice",))
    assert user.roles == {"CQRS.Approver", "6f2c…group-id", "CQRS.Practice"}
    assert person().roles == frozenset()
    assert person({"roles": "not-a-list-of-strings", "groups": [1, None]}).roles == {"not-a-list-of-strings"}


@pytest.mark.parametrize(
    "file_name,content",
    [
        ("accounts.csv", "email,account_id,roles\ngp.user@nhs.net,CQRS-0001,CQRS.Approver; CQRS.Practice\n"),
        (
            "accounts.json",
            json.dumps(
                [
                    {
                        "email": "gp.user@nhs.net",
                        "account_id": "CQRS-0001",
                        "roles": ["CQRS.Approver", "CQRS.Practice"],
                    }
                ]
            ),
        ),
    ],
)
def test_file_lookups_read_a_roles_column_or_field(tmp_path: Path, file_name: str, content: str) -> None:
    path = tmp_path / file_name
    path.write_text(content)
    account = FileAccountLookup(path, file_name.rsplit(".", 1)[1])(person().identity)
    assert account is not None
    assert account.roles == ("CQRS.Approver", "CQRS.Practice")
    assert "roles" not in account.attributes


# -- rules -----------------------------------------------------------------------------------------


def test_the_first_matching_rule_decides_and_no_rule_lets_any_account_through() -> None:
    rules = AccessRules(rules_from_value(list(RULES)))
    approver = person({"roles": ["CQRS.Approver"]})
    assert verdict(rules.rule_for("/approvals/2026/q3"), approver, 0, 0) == Allowed()
    assert isinstance(verdict(rules.rule_for("/approvals/x"), person(), 0, 0), NeedsRole)
    assert isinstance(verdict(rules.rule_for("/admin"), approver, 0, 0), NeedsRole)
    assert verdict(rules.rule_for("/messages"), person(), 0, 0) == Allowed()
    first = AccessRules(
        rules_from_value([{"paths": ["/a/**"], "roles": ["X"]}, {"paths": ["/a/b"], "roles": ["Y"]}])
    )
    assert first.rule_for("/a/b") == first.rules[0]  # order, not specificity


JOINED_RULE_SETS = [
    list(RULES),
    [{"paths": ["/a/*/c", "re:/d(/[0-9]+)?", "/e?"], "roles": ["X"]}, {"paths": ["/**"], "roles": ["Y"]}],
    # Patterns that refer to their own groups cannot be joined: rule_for matches one by one.
    [
        {"paths": ["re:/d(/x)?"], "roles": ["W"]},
        {"paths": ["re:/(a)\\1", "re:/(?P<x>b)(?P=x)", "re:/(a)?(?(1)b|c)"], "roles": ["X"]},
    ],
    [{"paths": ["re:(?i)/CaSe"], "roles": ["X"]}],
]
PROBE_PATHS = [
    "/",
    "/a/b/c",
    "/a/b/b/c",
    "/d",
    "/d/12",
    "/d/x",
    "/e1",
    "/e12",
    "/aa",
    "/bb",
    "/ab",
    "/case",
    "/approvals/1",
    "/approvals",
    "/admin",
    "/admin;x",
    "/declarations/\n",
    "/a/b/c;p",
]


@pytest.mark.parametrize(
    "rule_set", JOINED_RULE_SETS, ids=["demo", "globs-and-re", "back-references", "flags"]
)
def test_rule_for_gives_the_answer_of_trying_each_rule_in_order(rule_set: list[dict[str, Any]]) -> None:
    rules = AccessRules(rules_from_value(rule_set))
    for path in PROBE_PATHS:
        expected = next(
            (
                rule
                for rule in rules.rules
                for pattern in rule.paths
                for reading in {path, re.sub(r";[^/]*", "", path)}
                if compile_path_pattern(pattern)(reading)
            ),
            None,
        )
        assert rules.rule_for(path) == expected, path
        assert rules.rule_for(path) == expected, path  # and once remembered


def test_rule_for_remembers_a_bounded_number_of_paths() -> None:
    rules = AccessRules(rules_from_value(list(RULES)))
    for number in range(3 * AccessRules._REMEMBERED):
        rules.rule_for(f"/messages/{number}")
    rules.rule_for("/x" * AccessRules._LONGEST_REMEMBERED)
    assert 0 < len(rules._answers) <= AccessRules._REMEMBERED
    assert "/x" * AccessRules._LONGEST_REMEMBERED not in rules._answers
    assert rules.rule_for("/approvals/1") is rules.rules[0]


@pytest.mark.parametrize(
    "auth_time,now,expected",
    [(1000, 1000 + 900, Allowed), (1000, 1000 + 901, NeedsStepUp), (0, 5, NeedsStepUp)],
    ids=["just-in-time", "one-second-late", "sign-in-time-unknown"],
)
def test_a_max_auth_age_rule_needs_a_recent_sign_in(auth_time: int, now: int, expected: type) -> None:
    rule = AccessRule(("/declarations/**",), (), 900)
    assert isinstance(verdict(rule, person(), auth_time, now), expected)


def test_a_rule_with_roles_and_an_age_needs_both() -> None:
    rule = AccessRule(("/x",), ("A",), 60)
    assert isinstance(verdict(rule, person(), 100, 100), NeedsRole)
    assert isinstance(verdict(rule, person({"roles": ["A"]}), 0, 100), NeedsStepUp)
    assert verdict(rule, person({"roles": ["A"]}), 100, 120) == Allowed()


def test_a_path_parameter_cannot_step_around_a_rule() -> None:
    rules = AccessRules(rules_from_value(list(RULES)))
    assert rules.rule_for("/admin;jsessionid=1") is not None  # Tomcat serves it as /admin
    assert rules.rule_for("/approvals;x/list") is not None


def test_shadowed_rules_and_public_overlaps_are_warned_about() -> None:
    rules = AccessRules(
        rules_from_value(
            [
                {"paths": ["/a/**"], "roles": ["X"]},
                {"paths": ["/a/b/**"], "roles": ["Y"]},
                {"paths": ["/c"], "roles": ["Z"]},
            ]
        )
    )
    assert len(rules.shadowed()) == 1 and "access rule 2" in rules.shadowed()[0]
    overlaps = rules.public_overlaps(["/a/**", "/static/**"])
    assert len(overlaps) == 2 and all("'/a/**'" in warning for warning in overlaps)


@pytest.mark.parametrize(
    "value,problem",
    [
        ([{"roles": ["X"]}], "paths is a list"),
        ([{"paths": ["/a"]}], "names roles, max_auth_age_seconds, or both"),
        ([{"paths": ["/a"], "roles": ["X"], "colour": "red"}], "unknown keys: colour"),
        ([{"paths": ["/a"], "max_auth_age_seconds": "900"}], "whole number"),
        ("[{not json", "not a JSON array"),
        ({"paths": ["/a"]}, "not a list of rules"),
    ],
)
def test_a_malformed_rule_is_named(value: object, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        rules_from_value(value)


def settings_values(**more: Any) -> dict[str, Any]:
    return {
        "issuer": "https://login.microsoftonline.com/5b7c9d1e-2f3a-4b5c-8d6e-7f8091a2b3c4/v2.0",
        "client_id": "c",
        "client_secret": "s",
        "secret_keys": ("k" * 40,),
        "base_url": "https://cqrs.example.nhs.uk",
        "account_lookup": lambda identity: None,
        **more,
    }


def test_rules_come_from_toml_tables_and_from_a_json_variable(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text(
        '[[access_rules]]\npaths = ["/approvals/**"]\nroles = ["CQRS.Approver"]\n'
        '[[access_rules]]\npaths = ["/declarations/**"]\nmax_auth_age_seconds = 900\n'
        '[role_labels]\n"CQRS.Approver" = "approver"\n[claim_headers]\nX-Forwarded-Oid = "oid"\n'
    )
    from_file = Settings.load(toml, {}, **settings_values())
    from_env = Settings.load(
        None,
        {
            "CQRS_SSO_ACCESS_RULES": json.dumps(list(RULES[::2])),
            "CQRS_SSO_ROLE_LABELS": '{"CQRS.Approver": "approver"}',
        },
        **settings_values(),
    )
    assert from_file.access.access_rules == from_env.access.access_rules
    assert from_file.access.role_labels == {"CQRS.Approver": "approver"}
    assert from_file.access.claim_headers == {"X-Forwarded-Oid": "oid"}


@pytest.mark.parametrize(
    "more,problem",
    [
        ({"access_rules": [{"paths": ["approvals/**"], "roles": ["X"]}]}, "must start with / or re:"),
        ({"access_rules": [{"paths": ["re:("], "roles": ["X"]}]}, "is not a regular expression"),
        ({"access_rules": [{"paths": ["/a"], "max_auth_age_seconds": 5}]}, "at least 60"),
        ({"claim_headers": {"X Bad": "oid"}}, "is not a header name"),
        ({"claim_headers": {"X-Forwarded-User": "oid"}}, "an identity header the proxy sets itself"),
        ({"access_rules": "[{"}, "not a JSON array"),
    ],
)
def test_settings_name_a_bad_rule_or_header(more: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings(**settings_values(**more))
    assert any(problem in line for line in raised.value.problems), raised.value.problems


def test_forward_auth_rules_from_the_query() -> None:
    assert forward_auth_rule(None, None) is None
    rule = forward_auth_rule("CQRS.Approver, CQRS.Admin", "900")
    assert (
        rule is not None
        and rule.roles == ("CQRS.Approver", "CQRS.Admin")
        and rule.max_auth_age_seconds == 900
    )
    with pytest.raises(ValueError, match="whole number"):
        forward_auth_rule(None, "soon")


# -- auth_time (OIDC Core §3.1.3.7 point 13) -------------------------------------------------------


@pytest.mark.parametrize(
    "claims,max_age,fresh_since,result",
    [
        ({"auth_time": 1000}, 900, 0, 1000),
        ({"auth_time": 1000}, 0, 0, 1000),
        ({}, 0, 0, 0),  # unknown: any step-up rule will ask
        # Entra without the optional claim: refused, whatever prompt=login the URL asked for.
        ({}, 900, 1700, "missing_auth_time"),
        ({}, 0, 1700, "missing_auth_time"),  # shared_devices
        ({"auth_time": 600}, 900, 1700, "auth_time_too_old"),
        # An NHSmail sign-in from before this attempt: prompt=login was taken out of the URL.
        ({"auth_time": 1000}, 0, 1700, "auth_time_too_old"),
        ({"auth_time": 1600}, 900, 1700, 1600),  # within the clock leeway (180 s) of the start
        ({"auth_time": 2100}, 900, 1700, 1800),  # a provider clock ahead of ours: taken as now
        ({"auth_time": 10**12}, 0, 0, 1800),
        ({"auth_time": "yesterday"}, 0, 0, "invalid_auth_time"),
    ],
)
def test_a_fresh_sign_in_is_proven_by_the_tokens_auth_time_alone(
    claims: dict[str, Any], max_age: int, fresh_since: int, result: int | str
) -> None:
    if isinstance(result, str):
        with pytest.raises(TokenRejected) as rejected:
            auth_time_of(claims, max_age, fresh_since, 180, 1800)
        assert rejected.value.reason == result
    else:
        assert auth_time_of(claims, max_age, fresh_since, 180, 1800) == result


# -- claims into headers --------------------------------------------------------------------------


def test_claim_headers_carry_claims_roles_and_account_fields_and_never_a_control_character() -> None:
    user = User(
        Identity(
            "a@nhs.net",
            "s",
            "i",
            "oid-9",
            "tid",
            "A",
            {"roles": ["R1"], "groups": ["G"], "ctry": "GB\r\nX: y"},
        ),
        Account("CQRS-7", "a@nhs.net", {"organisation": "Y00001"}, ("R2",)),
    )
    headers = ClaimHeaders(
        {
            "X-Forwarded-Oid": "oid",
            "X-Forwarded-Roles": "roles",
            "X-Account": "account.id",
            "X-Org": "account.organisation",
            "X-Account-Roles": "account.roles",
            "X-Country": "ctry",
            "X-Missing": "nothing",
        }
    )
    assert dict(headers.values(user)) == {
        "X-Forwarded-Roles": "G,R1,R2",
        "X-Account": "CQRS-7",
        "X-Org": "Y00001",
        "X-Account-Roles": "R2",
    }  # oid is not a claim in this identity's claims; the CR/LF value is never sent


# -- through the router ----------------------------------------------------------------------------


@pytest.fixture
def ruled(make_flow: Callable[..., Runtime], provider: ScriptedProvider) -> Browser:
    return Browser(make_flow(access_rules=list(RULES), role_labels={"CQRS.Admin": "administrator"}), provider)


def test_a_person_without_the_role_gets_the_403_page_and_nothing_reaches_the_app(ruled: Browser) -> None:
    ruled.sign_in()
    page = ruled.request("GET", "/admin/users")
    assert isinstance(page, Respond) and page.status == 403
    body = page.body.decode()
    assert "You do not have access to this part of CQRS" in body
    assert "administrator role" in body  # the site's words for CQRS.Admin
    assert "mailto:support@cqrs.co.uk?subject=CQRS%20access%20request" in body
    assert isinstance(ruled.request("GET", "/messages"), PassThrough)


def test_an_api_call_without_the_role_gets_403_json(ruled: Browser) -> None:
    ruled.sign_in()
    reply = ruled.request("GET", "/approvals/list", {"accept": "application/json"})
    assert isinstance(reply, Respond) and reply.status == 403
    assert json.loads(reply.body) == {"error": "forbidden"}


def test_a_role_from_the_token_or_the_account_opens_the_path(
    ruled: Browser, provider: ScriptedProvider
) -> None:
    provider.claims = {"roles": ["CQRS.Approver"]}
    ruled.sign_in()
    assert isinstance(ruled.request("GET", "/approvals/list"), PassThrough)
    ruled.cookies.clear()
    provider.claims = {}
    provider.lookup = lambda identity: LookupReturned(Account("A-1", identity.email, {}, ("CQRS.Admin",)))
    ruled.sign_in()
    assert isinstance(ruled.request("GET", "/admin"), PassThrough)
    userinfo = ruled.request("GET", "/oauth2/userinfo")
    assert isinstance(userinfo, Respond) and json.loads(userinfo.body)["roles"] == ["CQRS.Admin"]


def test_dot_segments_cannot_step_around_a_rule(ruled: Browser) -> None:
    ruled.sign_in()
    for path in ("/approvals/../admin", "/messages/%2e%2e/admin", "/approvals/./../admin/"):
        reply = ruled.request("GET", path)
        assert isinstance(reply, Respond) and reply.status in (400, 403), path


def test_step_up_sends_the_person_to_nhsmail_again_and_keeps_the_session(
    make_flow: Callable[..., Runtime], provider: ScriptedProvider, clock: Clock
) -> None:
    browser = Browser(make_flow(access_rules=list(RULES), session_store="memory"), provider)
    browser.sign_in()
    first_cookie = browser.cookies["__Host-cqrs_sso"]
    asked = browser.request("POST", "/declarations/2026?x=1", {"origin": BASE})
    assert isinstance(asked, Respond) and asked.status == 303
    location = dict(asked.headers)["Location"]
    assert location == "/oauth2/sign_in?rd=%2Fdeclarations%2F2026%3Fx%3D1&max_auth_age=900"
    page = browser.request("GET", location)
    assert isinstance(page, Respond) and page.status == 401
    assert b"Sign in again to continue" in page.body and b"within the last 15 minutes" in page.body
    token = page.body.decode().split('name="csrf_token" value="')[1].split('"')[0]
    provider.form = {"csrf_token": token, "rd": "/declarations/2026?x=1", "max_auth_age": "900"}
    started = browser.request("POST", "/oauth2/start", {"origin": BASE})
    authorize = parse_qs(urlsplit(dict(started.headers)["Location"]).query)  # type: ignore[union-attr]
    assert authorize["prompt"] == ["login"] and authorize["max_age"] == ["900"]
    # OIDC Core §5.5: auth_time asked for as an essential claim, the proof the callback checks.
    assert json.loads(authorize["claims"][0]) == {"id_token": {"auth_time": {"essential": True}}}
    provider.nonce = authorize["nonce"][0]
    provider.claims = {"auth_time": int(clock())}
    back = browser.callback(authorize["state"][0])
    assert dict(back.headers)["Location"] == "/declarations/2026?x=1"  # a GET: a POST is never replayed
    assert browser.cookies["__Host-cqrs_sso"] == first_cookie  # the session kept its id
    assert isinstance(browser.request("GET", "/declarations/2026"), PassThrough)
    clock.offset += 901
    assert isinstance(browser.request("GET", "/declarations/2026"), Respond)  # too old again


def test_a_step_up_by_someone_else_starts_a_new_session(
    make_flow: Callable[..., Runtime], provider: ScriptedProvider
) -> None:
    browser = Browser(make_flow(access_rules=list(RULES), session_store="memory"), provider)
    browser.sign_in()
    before = browser.cookies["__Host-cqrs_sso"]
    step_up_callback(browser, provider, {"oid": "oid-of-someone-else", "auth_time": int(time.time())})
    assert browser.cookies["__Host-cqrs_sso"] != before


def step_up_callback(browser: Browser, provider: ScriptedProvider, claims: dict[str, Any]) -> Respond:
    """A signed-in person steps up for /declarations/1: the provider's token has ``claims``."""
    page = browser.request("GET", "/oauth2/sign_in?rd=/declarations/1&max_auth_age=900")
    token = page.body.decode().split('name="csrf_token" value="')[1].split('"')[0]  # type: ignore[union-attr]
    provider.form = {"csrf_token": token, "rd": "/declarations/1", "max_auth_age": "900"}
    started = browser.request("POST", "/oauth2/start", {"origin": BASE})
    authorize = parse_qs(urlsplit(dict(started.headers)["Location"]).query)  # type: ignore[union-attr]
    provider.nonce = authorize["nonce"][0]
    provider.claims = claims
    return browser.callback(authorize["state"][0])


def test_a_step_up_whose_token_has_no_auth_time_is_refused_with_what_to_ask_nhsmail(
    make_flow: Callable[..., Runtime], provider: ScriptedProvider
) -> None:
    """Entra's default: no auth_time. The person deleted prompt=login from the URL, or
    NHSmail honoured it; either way the token cannot show a fresh sign-in."""
    browser = Browser(make_flow(access_rules=list(RULES), session_store="memory"), provider)
    browser.sign_in()
    page = step_up_callback(browser, provider, {})
    assert page.status == 403
    assert b"CQRS could not confirm when you signed in" in page.body
    assert b"<code>auth_time</code> as an optional claim" in page.body
    refused = browser.request("GET", "/declarations/1")
    assert isinstance(refused, Respond) and refused.status == 303  # still needs the step-up


def test_a_step_up_whose_token_shows_an_earlier_sign_in_is_refused(
    make_flow: Callable[..., Runtime], provider: ScriptedProvider, clock: Clock
) -> None:
    """prompt=login and max_age removed from the NHSmail URL: NHSmail signs the person in
    from its own session of 20 minutes ago, and says so in auth_time."""
    browser = Browser(make_flow(access_rules=list(RULES), session_store="memory"), provider)
    browser.sign_in()
    page = step_up_callback(browser, provider, {"auth_time": int(clock()) - 1200})
    assert page.status == 401 and b"Please type your NHSmail password again" in page.body
    refused = browser.request("GET", "/declarations/1")
    assert isinstance(refused, Respond) and refused.status == 303


def test_shared_devices_needs_a_sign_in_during_this_attempt(
    make_flow: Callable[..., Runtime], provider: ScriptedProvider, clock: Clock
) -> None:
    browser = Browser(make_flow(shared_devices=True), provider)
    state = browser.start()
    provider.claims = {"auth_time": int(clock()) - 3600}  # the previous person's NHSmail session
    assert browser.callback(state).status == 401
    assert "__Host-cqrs_sso" not in browser.cookies
    provider.claims = {}
    assert browser.callback(browser.start()).status == 403  # no auth_time: not proven either
    provider.claims = {"auth_time": int(clock())}
    assert browser.callback(browser.start()).status == 303  # the password was typed just now
    assert "__Host-cqrs_sso" in browser.cookies


def test_an_api_call_needing_a_step_up_gets_401_json(ruled: Browser) -> None:
    ruled.sign_in()
    reply = ruled.request("GET", "/declarations/1", {"accept": "application/json"})
    assert isinstance(reply, Respond) and reply.status == 401
    body = json.loads(reply.body)
    assert body["error"] == "step_up_required" and body["max_auth_age"] == 900


def test_a_groups_overage_refuses_sign_in(ruled: Browser, provider: ScriptedProvider) -> None:
    provider.claims = {
        "_claim_names": {"groups": "src1"},
        "_claim_sources": {"src1": {"endpoint": "https://graph…"}},
    }
    page = ruled.sign_in()
    assert page.status == 403
    assert b"CQRS cannot read your NHSmail groups" in page.body


def test_many_groups_keep_the_ones_rules_name_in_the_cookie(
    make_flow: Callable[..., Runtime], provider: ScriptedProvider
) -> None:
    rules = [{"paths": ["/approvals/**"], "roles": ["approvers-group-id"]}]
    browser = Browser(make_flow(access_rules=rules), provider)
    provider.claims = {"groups": [f"group-{n:04d}-{'x' * 30}" for n in range(200)] + ["approvers-group-id"]}
    browser.sign_in()
    assert len(browser.cookies["__Host-cqrs_sso"]) < 4000
    assert isinstance(browser.request("GET", "/approvals/1"), PassThrough)
