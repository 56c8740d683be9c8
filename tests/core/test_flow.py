"""The core's decisions, driven with no network and no framework: effects are answered by a
scripted provider, so every fault can be produced exactly."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from cqrs_sso_middleware import Account, Identity, Runtime, Settings
from cqrs_sso_middleware.core.interpreter import run_sync
from cqrs_sso_middleware.core.protocol import (
    OUTCOME_TYPES,
    EffectResult,
    HttpCall,
    HttpFailure,
    HttpReply,
    HttpResult,
    IncomingRequest,
    LookUpAccount,
    LookupFailed,
    LookupResult,
    LookupReturned,
    PassThrough,
    ReadForm,
    Respond,
    StoreEffect,
    StoreResult,
)
from cqrs_sso_middleware.stores import MemoryStore

TENANT = "5b7c9d1e-2f3a-4b5c-8d6e-7f8091a2b3c4"
ISSUER = f"https://login.microsoftonline.com/{TENANT}/v2.0"
BASE = "https://cqrs.example.nhs.uk"
CLIENT_ID = "client-1"


class Headers(dict[str, str]):
    def __init__(self, values: dict[str, str] | None = None) -> None:
        super().__init__({k.lower(): v for k, v in (values or {}).items()})

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(key.lower(), default)


@dataclass
class ScriptedProvider:
    """Answers the core's effects the way Entra would, unless told to misbehave."""

    key: RSAKey = field(
        default_factory=lambda: RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig"})
    )
    published: list[RSAKey] = field(default_factory=list)
    calls: list[HttpCall] = field(default_factory=list)
    metadata: Callable[[], EffectResult] | None = None
    jwks: Callable[[], EffectResult] | None = None
    token: Callable[[HttpCall], EffectResult] | None = None
    claims: dict[str, Any] = field(default_factory=dict)
    nonce: str = ""
    lookup: Callable[[Identity], EffectResult] = lambda identity: LookupReturned(
        Account("A-1", identity.email)
    )
    form: dict[str, str] | None = None
    send_kid: bool = True
    kid: str | None = None  # a kid other than the signing key's own (forgeries)
    store_backend: MemoryStore = field(default_factory=MemoryStore)  # answers the store effects

    def __post_init__(self) -> None:
        self.published = [self.key]

    # -- the interpreter's SyncPerformer: answers the core's effects ---------------------------

    def read_form(self, effect: ReadForm) -> bytes | None:
        return None if self.form is None else urlencode(self.form).encode()

    def look_up(self, effect: LookUpAccount) -> LookupResult:
        return self.lookup(effect.identity)  # type: ignore[return-value]

    def store(self, effect: StoreEffect) -> StoreResult:
        return self.store_backend.perform(effect)

    def http(self, effect: HttpCall) -> HttpResult:
        self.calls.append(effect)
        answer: EffectResult
        if effect.purpose == "metadata":
            answer = (
                self.metadata() if self.metadata else HttpReply(200, json.dumps(self.discovery()).encode())
            )
        elif effect.purpose == "jwks":
            keys = {"keys": [k.as_dict(private=False) for k in self.published]}
            answer = self.jwks() if self.jwks else HttpReply(200, json.dumps(keys).encode())
        else:
            answer = (
                self.token(effect)
                if self.token
                else HttpReply(200, json.dumps({"id_token": self.id_token()}).encode())
            )
        assert isinstance(answer, HttpReply | HttpFailure)
        return answer

    @staticmethod
    def discovery() -> dict[str, Any]:
        root = f"https://login.microsoftonline.com/{TENANT}"
        return {
            "issuer": ISSUER,
            "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
            "token_endpoint": f"{root}/oauth2/v2.0/token",
            "jwks_uri": f"{root}/discovery/v2.0/keys",
            "end_session_endpoint": f"{root}/oauth2/v2.0/logout",
            "id_token_signing_alg_values_supported": ["RS256"],
        }

    def id_token(self) -> str:
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "aud": CLIENT_ID,
            "sub": "pairwise",
            "oid": "oid-1",
            "tid": TENANT,
            "preferred_username": "gp.user@nhs.net",
            "name": "Dr Gita Patel",
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "nonce": self.nonce,
            **self.claims,
        }
        header = {"alg": "RS256", **({"kid": self.kid or self.key.kid} if self.send_kid else {})}
        return jwt.encode(header, claims, self.key, algorithms=["RS256"])


class Browser:
    """One browser's cookie jar, talking to the core through the runtime (router, the shipped
    interpreter, then ``finish``: what the drivers do, without a socket)."""

    def __init__(self, runtime: Runtime, provider: ScriptedProvider) -> None:
        self.runtime, self.provider = runtime, provider
        self.cookies: dict[str, str] = {}

    def request(
        self, method: str, target: str, headers: dict[str, str] | None = None
    ) -> PassThrough | Respond:
        path, _, query = target.partition("?")
        all_headers = {"accept": "text/html", **(headers or {})}
        if method == "POST":
            all_headers.setdefault("content-type", "application/x-www-form-urlencoded")
        if self.cookies:
            all_headers["cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        decision = self.runtime.router.handle(IncomingRequest(method, path, query, Headers(all_headers)))
        outcome = decision if isinstance(decision, OUTCOME_TYPES) else run_sync(decision, self.provider)
        answer = self.runtime.finish(outcome)
        cookies = (
            answer.set_cookies
            if isinstance(answer, PassThrough)
            else [v for k, v in answer.headers if k == "Set-Cookie"]
        )
        for cookie in cookies:
            name, _, rest = cookie.partition("=")
            value = rest.split(";", 1)[0]
            if "Max-Age=0" in cookie:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        return answer

    def start(self, path: str = "/messages") -> str:
        page = self.request("GET", f"/oauth2/sign_in?rd={path}")
        assert isinstance(page, Respond) and page.status == 200
        body = page.body.decode()
        token = body.split('name="csrf_token" value="')[1].split('"')[0]
        self.provider.form = {"csrf_token": token, "rd": path}
        started = self.request("POST", "/oauth2/start", {"origin": BASE})
        assert isinstance(started, Respond) and started.status == 303, started
        location = dict(started.headers)["Location"]
        query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
        self.provider.nonce = query["nonce"]
        return query["state"]

    def callback(self, state: str, **params: str) -> Respond:
        """The callback, followed to ``/oauth2/sign_in_result`` when it ends there."""
        outcome = self.request(
            "GET", "/oauth2/callback?" + urlencode({"state": state, "code": "c0de", **params})
        )
        assert isinstance(outcome, Respond)
        if outcome.status == 303 and dict(outcome.headers)["Location"] == "/oauth2/sign_in_result":
            outcome = self.request("GET", "/oauth2/sign_in_result")
            assert isinstance(outcome, Respond)
        return outcome

    def sign_in(self) -> Respond:
        return self.callback(self.start())


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def lookup(identity: Identity) -> Account | None:
    return None  # the scripted provider answers lookups itself


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_flow(clock: Clock, provider: ScriptedProvider) -> Callable[..., Runtime]:
    """A runtime for the core, its store shared with the scripted provider."""

    def build(**overrides: Any) -> Runtime:
        values: dict[str, Any] = {
            "issuer": ISSUER,
            "client_id": CLIENT_ID,
            "client_secret": "s3cret",
            "secret_keys": (secrets.token_urlsafe(32),),
            "base_url": BASE,
            "account_lookup": lookup,
            **overrides,
        }
        return Runtime.from_settings(Settings(**values), clock=clock, store=provider.store_backend)

    return build


@pytest.fixture
def provider() -> ScriptedProvider:
    return ScriptedProvider()


@pytest.fixture
def browser(make_flow: Callable[..., Runtime], provider: ScriptedProvider) -> Browser:
    return Browser(make_flow(), provider)


def has_session(browser: Browser) -> bool:
    return "__Host-cqrs_sso" in browser.cookies


# -- cookies on https ------------------------------------------------------------------------


def test_https_deployment_uses_host_prefixed_secure_httponly_lax_cookies(browser: Browser) -> None:
    assert browser.sign_in().status == 303
    assert has_session(browser)
    outcome = browser.request("GET", "/oauth2/sign_in")
    assert isinstance(outcome, Respond)
    for name in browser.cookies:
        assert name.startswith("__Host-")
    jar = browser.runtime.router.cookies.policy.set_cookie("__Host-x", "v", 10)
    for flag in ("Path=/", "HttpOnly", "Secure", "SameSite=Lax"):
        assert flag in jar
    assert "Domain" not in jar


def test_session_cookie_stays_under_4k(browser: Browser, provider: ScriptedProvider) -> None:
    provider.claims = {"groups": [secrets.token_hex(16) for _ in range(200)]}
    browser.sign_in()
    assert len(browser.cookies["__Host-cqrs_sso"]) < 4000


# -- provider faults fail closed ----------------------------------------------------------------


FAULTS: list[Any] = [
    pytest.param("token", lambda call: HttpReply(500, b"oops"), 503, id="token-endpoint-500"),
    pytest.param("token", lambda call: HttpFailure("ReadTimeout"), 503, id="token-endpoint-timeout"),
    pytest.param("token", lambda call: HttpReply(200, b"<html>"), 503, id="token-endpoint-not-json"),
    pytest.param("token", lambda call: HttpReply(200, b'{"access_token": "x"}'), 503, id="no-id-token"),
    pytest.param("token", lambda call: HttpReply(200, b"[1]"), 503, id="json-not-object"),
    pytest.param(
        "token",
        lambda call: HttpReply(400, b'{"error": "invalid_grant"}'),
        401,
        id="invalid-grant-is-a-failed-sign-in",
    ),
    pytest.param("jwks", lambda: HttpFailure("ConnectError"), 503, id="jwks-unreachable"),
    pytest.param("jwks", lambda: HttpReply(200, b"garbage"), 503, id="jwks-garbage"),
]


@pytest.mark.parametrize("where,answer,status", FAULTS)
def test_provider_faults_give_the_right_page_and_no_session(
    browser: Browser, provider: ScriptedProvider, where: str, answer: Any, status: int
) -> None:
    state = browser.start()
    setattr(provider, where, answer)
    reply = browser.callback(state)
    assert reply.status == status
    assert not has_session(browser)
    assert b"Traceback" not in reply.body


def test_metadata_unreachable_shows_temporarily_unavailable_then_recovers(
    browser: Browser, provider: ScriptedProvider, clock: Clock
) -> None:
    provider.metadata = lambda: HttpFailure("ConnectError")
    page = browser.request("GET", "/oauth2/sign_in")
    assert isinstance(page, Respond)
    token = page.body.decode().split('name="csrf_token" value="')[1].split('"')[0]
    provider.form = {"csrf_token": token, "rd": "/"}
    down = browser.request("POST", "/oauth2/start")
    assert isinstance(down, Respond) and down.status == 503
    assert b"temporarily unavailable" in down.body
    calls = len(provider.calls)
    assert browser.request("POST", "/oauth2/start").status == 503  # type: ignore[union-attr]
    assert len(provider.calls) == calls  # not re-fetched within the retry window
    provider.metadata = None
    clock.offset += 6
    up = browser.request("POST", "/oauth2/start")
    assert isinstance(up, Respond) and up.status == 303


def test_provider_outage_error_at_callback_is_503(browser: Browser) -> None:
    state = browser.start()
    reply = browser.callback(state, error="temporarily_unavailable")
    assert reply.status == 503


def test_provider_error_description_is_never_shown(browser: Browser) -> None:
    state = browser.start()
    reply = browser.callback(state, error="access_denied", error_description="<script>AADSTS50105</script>")
    assert reply.status == 401
    assert b"AADSTS50105" not in reply.body and b"<script>" not in reply.body


def test_repeated_callback_parameters_are_refused(browser: Browser) -> None:
    state = browser.start()
    reply = browser.request("GET", f"/oauth2/callback?state={state}&state={state}&code=a")
    assert isinstance(reply, Respond) and reply.status == 400


# -- the account lookup -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(lambda identity: LookupFailed("raised ConnectionError"), id="lookup-raised"),
        pytest.param(lambda identity: LookupFailed("timed out after 5s"), id="lookup-timed-out"),
        pytest.param(lambda identity: LookupReturned({"account_id": "x"}), id="returned-a-dict"),
        pytest.param(lambda identity: LookupReturned(True), id="returned-true"),
    ],
)
def test_lookup_failure_is_not_no_account(browser: Browser, provider: ScriptedProvider, answer: Any) -> None:
    provider.lookup = answer
    reply = browser.sign_in()
    assert reply.status == 503
    assert b"temporarily unavailable" in reply.body
    assert not has_session(browser)


def test_lookup_receives_email_and_entra_ids(browser: Browser, provider: ScriptedProvider) -> None:
    seen: list[Identity] = []
    provider.lookup = lambda identity: (seen.append(identity), LookupReturned(Account("A-1")))[1]
    provider.claims = {"preferred_username": "  GP.User@NHS.net "}
    browser.sign_in()
    assert seen[0].email == "gp.user@nhs.net"
    assert (seen[0].object_id, seen[0].tenant_id) == ("oid-1", TENANT)
    assert seen[0].claims["name"] == "Dr Gita Patel"


def test_email_claim_wins_over_preferred_username_and_upn(
    browser: Browser, provider: ScriptedProvider
) -> None:
    seen: list[str] = []
    provider.lookup = lambda identity: (seen.append(identity.email), LookupReturned(None))[1]
    provider.claims = {"email": "first@nhs.net", "upn": "third@nhs.net"}
    assert browser.sign_in().status == 403
    assert seen == ["first@nhs.net"]


def test_account_is_rechecked_and_a_removed_account_ends_the_session(
    make_flow: Callable[..., Runtime], provider: ScriptedProvider, clock: Clock
) -> None:
    browser = Browser(make_flow(account_recheck_seconds=600), provider)
    browser.sign_in()
    assert isinstance(browser.request("GET", "/"), PassThrough)
    provider.lookup = lambda identity: LookupReturned(None)
    clock.offset += 601
    reply = browser.request("GET", "/")
    assert isinstance(reply, Respond) and reply.status == 303
    page = browser.request("GET", dict(reply.headers)["Location"])
    assert isinstance(page, Respond) and page.status == 403
    assert b"no CQRS account is associated" in page.body
    assert not has_session(browser)


def test_recheck_answers_api_calls_with_json(
    make_flow: Callable[..., Runtime], provider: ScriptedProvider, clock: Clock
) -> None:
    browser = Browser(make_flow(account_recheck_seconds=600), provider)
    browser.sign_in()
    clock.offset += 601
    provider.lookup = lambda identity: LookupFailed("raised OSError")
    down = browser.request("GET", "/api", {"accept": "application/json"})
    assert isinstance(down, Respond) and down.status == 503
    assert json.loads(down.body) == {"error": "temporarily_unavailable"}
    provider.lookup = lambda identity: LookupReturned(None)
    gone = browser.request("GET", "/api", {"accept": "application/json"})
    assert isinstance(gone, Respond) and gone.status == 403
    assert json.loads(gone.body) == {"error": "no_account"}
    assert not has_session(browser)


def test_failed_recheck_fails_closed(
    make_flow: Callable[..., Runtime], provider: ScriptedProvider, clock: Clock
) -> None:
    browser = Browser(make_flow(account_recheck_seconds=600), provider)
    browser.sign_in()
    provider.lookup = lambda identity: LookupFailed("raised OSError")
    clock.offset += 601
    reply = browser.request("GET", "/")
    assert isinstance(reply, Respond) and reply.status == 503


# -- key rotation -----------------------------------------------------------------------------


def test_removed_key_tokens_are_refused_after_refresh(
    browser: Browser, provider: ScriptedProvider, clock: Clock
) -> None:
    browser.sign_in()
    old = provider.key
    provider.published = [RSAKey.generate_key(2048, parameters={"kid": "k2", "use": "sig"})]
    clock.offset += 24 * 3600 + 1  # daily refresh picks up the new set
    provider.key = old
    assert Browser(browser.runtime, provider).sign_in().status == 401


# -- escaping ---------------------------------------------------------------------------------


def test_user_controlled_values_are_escaped_on_pages(browser: Browser, provider: ScriptedProvider) -> None:
    provider.claims = {"email": '"><script>alert(1)</script>@nhs.net'}
    provider.lookup = lambda identity: LookupReturned(None)
    reply = browser.sign_in()
    assert reply.status == 403
    assert b"<script>alert(1)" not in reply.body
    assert b"&lt;script&gt;" in reply.body


def test_every_page_is_no_store_and_framing_is_denied(browser: Browser) -> None:
    for target in ("/oauth2/sign_in", "/oauth2/sign_out", "/oauth2/nope", "/oauth2/callback?state=x&code=y"):
        reply = browser.request("GET", target)
        assert isinstance(reply, Respond)
        headers = dict(reply.headers)
        assert headers["Cache-Control"] == "no-store", target
        assert headers["X-Frame-Options"] == "DENY"
        # no-referrer would make browsers send "Origin: null" on our form POSTs (CSRF refusal).
        assert headers["Referrer-Policy"] == "same-origin"
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]


def test_public_path_globs_and_regexes(make_flow: Callable[..., Runtime], provider: ScriptedProvider) -> None:
    browser = Browser(make_flow(public_paths=("/static/*", "re:/status(z|check)")), provider)
    assert isinstance(browser.request("GET", "/static/site.css"), PassThrough)
    assert isinstance(browser.request("GET", "/statusz"), PassThrough)
    assert isinstance(browser.request("GET", "/statuscheck"), PassThrough)
    assert isinstance(browser.request("GET", "/statuszz"), Respond)
    assert isinstance(browser.request("GET", "/staticx/a"), Respond)


def test_forward_auth_judges_the_normalised_original_uri(
    make_flow: Callable[..., Runtime], provider: ScriptedProvider
) -> None:
    browser = Browser(make_flow(public_paths=("/public/**",)), provider)

    def auth(original: str) -> Respond:
        reply = browser.request("GET", "/oauth2/auth", {"x-original-uri": original})
        assert isinstance(reply, Respond)
        return reply

    public = auth("/public/x/../site.css?v=1")
    assert public.status == 202
    headers = dict(public.headers)
    assert headers["X-Accel-Expires"] == "0"  # never cached by cookie in nginx
    assert "X-Auth-Request-User" not in headers
    assert auth("/public/../secret").status == 401
    assert auth("/public/..%2fsecret").status == 400
    assert auth("/public/..;/secret").status == 400
    behind_caddy = Browser(
        make_flow(public_paths=("/public/**",), forward_auth_uri_header="X-Forwarded-Uri"), provider
    )
    forwarded = behind_caddy.request("GET", "/oauth2/auth", {"x-forwarded-uri": "/public/%2e%2e/secret"})
    assert isinstance(forwarded, Respond) and forwarded.status == 401


def test_the_app_is_handed_the_normalised_path(
    make_flow: Callable[..., Runtime], provider: ScriptedProvider
) -> None:
    browser = Browser(make_flow(public_paths=("/public/**",)), provider)
    outcome = browser.request("GET", "/public/a/./b/../c.css")
    assert isinstance(outcome, PassThrough) and outcome.path == "/public/a/c.css"
    plain = browser.request("GET", "/public/c.css")
    assert isinstance(plain, PassThrough) and plain.path is None  # unchanged: nothing to rewrite


def test_healthz_answers_without_touching_the_provider(browser: Browser, provider: ScriptedProvider) -> None:
    reply = browser.request("GET", "/healthz")
    assert isinstance(reply, Respond) and reply.status == 200
    assert provider.calls == []


def test_readyz_is_503_until_provider_metadata_loads(
    browser: Browser, provider: ScriptedProvider, clock: Clock
) -> None:
    provider.metadata = lambda: HttpFailure("ConnectError")
    down = browser.request("GET", "/readyz")
    assert isinstance(down, Respond) and down.status == 503
    assert json.loads(down.body)["status"] == "not ready"
    provider.metadata = None
    clock.offset += 6
    up = browser.request("GET", "/readyz")
    assert isinstance(up, Respond) and up.status == 200


def test_probes_can_be_disabled(make_flow: Callable[..., Runtime], provider: ScriptedProvider) -> None:
    browser = Browser(make_flow(health_path="", ready_path=""), provider)
    assert isinstance(browser.request("GET", "/healthz", {"accept": "application/json"}), Respond)
    assert browser.request("GET", "/healthz", {"accept": "application/json"}).status == 401  # type: ignore[union-attr]


def test_forward_auth_allows_with_an_empty_body(
    make_flow: Callable[..., Runtime], provider: ScriptedProvider
) -> None:
    """nginx reads only the head of an auth_request answer and closes the connection to
    the sign-in service when a body follows: a body would cost a TCP connection per page
    (benchmarks/proxy.py (c): 4,270 req/s with a JSON body, 13,871 without)."""
    browser = Browser(make_flow(public_paths=("/public/**",)), provider)
    public = browser.request("GET", "/oauth2/auth", {"x-original-uri": "/public/site.css"})
    assert isinstance(public, Respond) and (public.status, public.body) == (202, b"")
    browser.sign_in()
    allowed = browser.request("GET", "/oauth2/auth", {"x-original-uri": "/reports"})
    assert isinstance(allowed, Respond) and (allowed.status, allowed.body) == (202, b"")
    assert dict(allowed.headers)["X-Auth-Request-Email"] == "gp.user@nhs.net"
    assert dict(allowed.headers)["Cache-Control"] == "no-store"


def test_forward_auth_faults_answer_503_json_with_retry_after(
    make_flow: Callable[..., Runtime], provider: ScriptedProvider, clock: Clock
) -> None:
    """A lookup failing at the account re-check, or the store failing, is an outage: 503
    with the outage's own body and Retry-After (it once said "unauthenticated")."""
    browser = Browser(make_flow(account_recheck_seconds=60), provider)
    browser.sign_in()
    provider.lookup = lambda identity: LookupFailed("raised TimeoutError")
    clock.offset += 61
    for headers in ({"accept": "text/html"}, {"accept": "application/json"}):
        reply = browser.request("GET", "/oauth2/auth", headers)
        assert isinstance(reply, Respond) and reply.status == 503
        assert json.loads(reply.body) == {"error": "temporarily_unavailable"}
        assert dict(reply.headers)["Retry-After"] == "30"
    from cqrs_sso_middleware.core.protocol import StoreFailed

    stored = Browser(make_flow(session_store="memory"), provider)
    provider.lookup = lambda identity: LookupReturned(Account("A-1", identity.email))
    stored.sign_in()
    provider.store_backend.perform = lambda effect: StoreFailed("redis: ConnectionError")  # type: ignore[method-assign]
    reply = stored.request("GET", "/oauth2/auth", {"accept": "text/html"})
    assert isinstance(reply, Respond) and reply.status == 503
    assert json.loads(reply.body) == {"error": "temporarily_unavailable"}
    assert dict(reply.headers)["Retry-After"] == "30"


@pytest.mark.parametrize("pattern", ["re:.*\\.css", "re:.*\\.(css|js)$", "/**/*.css", "**.js"])
def test_a_path_parameter_never_counts_as_public(
    make_flow: Callable[..., Runtime], provider: ScriptedProvider, pattern: str
) -> None:
    browser = Browser(make_flow(public_paths=(pattern,)), provider)
    suffix = "css" if "css" in pattern else "js"
    assert isinstance(browser.request("GET", f"/site/a.{suffix}"), PassThrough)
    for path in (f"/admin;.{suffix}", f"/admin;jsessionid=1.{suffix}", f"/admin%3B.{suffix}"):
        reply = browser.request("GET", path)
        assert isinstance(reply, Respond) and reply.status in (303, 400), path
    auth = browser.request("GET", "/oauth2/auth", {"x-original-uri": f"/admin;.{suffix}"})
    assert isinstance(auth, Respond) and auth.status == 401
