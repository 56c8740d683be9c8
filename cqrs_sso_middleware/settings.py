"""The one frozen ``Settings`` object, from code, a TOML file or ``CQRS_SSO_*`` variables.

Precedence is one rule, most specific to this run first: **explicit arguments (CLI flags or
keyword arguments) > environment variables > TOML file > defaults.** Secrets may also come
from ``CQRS_SSO_<NAME>_FILE`` (a path whose content is the value), as container secrets do.

Every problem is reported at construction, one line each, as a :class:`ConfigError` —
never at the first request.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

from .core.errors import ConfigError
from .core.identity import AccountLookup
from .lookups import resolve_account_lookup
from .stores import display_url

__all__ = ["AccountLookup", "ConfigError", "Settings"]
TokenAuthMethod = Literal["client_secret_basic", "client_secret_post", "private_key_jwt"]

ENTRA_AUTHORITY = "https://login.microsoftonline.com"
SEED_HELP_EMAIL = "support@cqrs.co.uk"
SEED_HELP_PHONE = "0800 4402777 (8am-6pm Mon-Fri exc Bank Holidays)"
ENV_PREFIX = "CQRS_SSO_"
_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}
_MIN_SECRET_KEY_BYTES = 32


def _doc(text: str, secret: bool = False) -> dict[str, object]:
    """A setting's description (``docs/configuration.md`` is generated from these)."""
    return {"doc": text, "secret": secret}


def _is_loopback(url: str) -> bool:
    return (urlsplit(url).hostname or "") in _LOOPBACK_HOSTS


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything the middleware needs, validated. Build it once at start-up."""

    client_id: str = field(metadata=_doc("the client id NHSmail registered for this app"))
    secret_keys: tuple[str, ...] = field(
        repr=False,
        metadata=_doc(
            "comma list (TOML: array); the first encrypts and signs, all are accepted (rotation); each ≥ 32 bytes (`cqrs-sso new-secret`)",
            secret=True,
        ),
    )
    base_url: str = field(
        metadata=_doc(
            "public origin, e.g. `https://cqrs.example.nhs.uk`; https unless loopback; builds the redirect URI"
        )
    )
    account_lookup: AccountLookup | str = field(
        metadata=_doc(
            "`package.module:function`, `csv:PATH`, `json:PATH`, `sql:URL` (with `account_query`) or `http(s)://…{email}…`"
        )
    )
    issuer: str = field(
        default="", metadata=_doc("OpenID issuer; metadata from `<issuer>/.well-known/openid-configuration`")
    )
    tenant: str = field(
        default="",
        metadata=_doc("NHSmail preset: the issuer becomes `https://login.microsoftonline.com/<tenant>/v2.0`"),
    )
    client_secret: str = field(
        default="",
        repr=False,
        metadata=_doc("client secret, for `client_secret_basic` / `client_secret_post`", secret=True),
    )
    private_key_file: str = field(
        default="",
        metadata=_doc(
            "PEM RSA private key (plus the certificate, for Entra's `x5t`) for `private_key_jwt` (`cqrs-sso certificate`)"
        ),
    )
    # Loaded from private_key_file at start-up, so a bad file fails then, not at sign-in.
    private_key_pem: str = field(
        default="",
        repr=False,
        metadata=_doc("the key itself instead of a file (code or `_FILE` only)", secret=True),
    )
    token_auth_method: TokenAuthMethod | None = field(
        default=None,
        metadata=_doc(
            "`client_secret_basic`, `client_secret_post` or `private_key_jwt`; unset: basic, or `private_key_jwt` when a key is given"
        ),
    )
    path_prefix: str = field(default="/oauth2", metadata=_doc("where the endpoints live"))
    default_return_path: str = field(
        default="/", metadata=_doc("where users land when no safe return path is known (the message centre)")
    )
    allowed_email_domains: tuple[str, ...] = field(
        default=(), metadata=_doc("comma list, e.g. `nhs.net`; others see the no-account page; empty: any")
    )
    public_paths: tuple[str, ...] = field(
        default=(),
        metadata=_doc(
            "comma list of anchored globs (`*` within one segment, `**` across: `/static/**`) or `re:` regexes (fullmatch) on the normalised path; they pass without a session (see docs/proxy.md)"
        ),
    )
    auto_redirect: bool = field(default=False, metadata=_doc("skip the sign-in page, go straight to NHSmail"))
    session_store: str = field(
        default="cookie",
        repr=False,  # a Redis URL may hold a password: see display_store
        metadata=_doc(
            '`cookie` (stateless, encrypted; cannot be revoked), `memory` (one process) or a `redis://` / `rediss://` URL (any number of instances; revocation) — see "Session stores"'
        ),
    )
    redis_password: str = field(
        default="",
        repr=False,
        metadata=_doc("Redis password; wins over one in the URL; never logged or shown", secret=True),
    )
    session_store_timeout_seconds: float = field(
        default=2.0, metadata=_doc("a slower store answer counts as failed (503)")
    )
    session_key_prefix: str = field(
        default="cqrs_sso:",
        metadata=_doc("prefix of every key in Redis, to share one Redis between services"),
    )
    # Sign-out also ends the NHSmail session (RP-initiated logout) when the provider has an
    # end_session_endpoint: on a shared PC the next person must type a password.
    sign_out_at_provider: bool = field(
        default=True,
        metadata=_doc(
            "sign-out also ends the NHSmail session (RP-initiated logout) when the provider has an `end_session_endpoint`"
        ),
    )
    session_idle_seconds: int = field(default=3600, metadata=_doc("idle time-out"))
    session_max_seconds: int = field(default=43200, metadata=_doc("absolute time-out"))
    account_recheck_seconds: int = field(
        default=900, metadata=_doc("re-ask the lookup for signed-in users this often; `0` never")
    )
    account_lookup_timeout_seconds: float = field(
        default=5.0, metadata=_doc("a slower lookup counts as failed (503)")
    )
    account_cache_seconds: int = field(
        default=0,
        metadata=_doc(
            'keep lookup answers (account or "no account", never failures) this long, per process, keyed by email and `oid`; `0` off'
        ),
    )
    account_query: str = field(
        default="",
        metadata=_doc("for `sql:`: a `SELECT` using `:email` (and optionally `:oid`, `:tid`, `:sub`)"),
    )
    http_timeout_seconds: float = field(default=10.0, metadata=_doc("time-out of each call to the provider"))
    clock_leeway_seconds: int = field(
        default=180, metadata=_doc("allowed clock skew for `exp` / `iat` / `nbf`")
    )
    scopes: tuple[str, ...] = field(
        default=("openid", "profile", "email"), metadata=_doc("requested scopes; must include `openid`")
    )
    cookie_name: str = field(
        default="cqrs_sso", metadata=_doc("base cookie name (`__Host-` is prefixed on https)")
    )
    help_email: str = field(default=SEED_HELP_EMAIL, metadata=_doc("help desk email on every page"))
    help_phone: str = field(default=SEED_HELP_PHONE, metadata=_doc("help desk phone on every page"))
    help_url: str = field(
        default="https://digital.nhs.uk/services/calculating-quality-reporting-service",
        metadata=_doc("the Help link on the sign-in page"),
    )
    contact_url: str = field(
        default="mailto:support@cqrs.co.uk", metadata=_doc("the Contact Us link on the sign-in page")
    )
    collections_url: str = field(
        default="https://digital.nhs.uk/services/general-practice-gp-collections",
        metadata=_doc("the GP Collections Website link on the sign-in page"),
    )
    templates_dir: str = field(default="", metadata=_doc("folder whose templates override the packaged ones"))
    health_path: str = field(default="/healthz", metadata=_doc("liveness probe (always 200); empty disables"))
    ready_path: str = field(
        default="/readyz",
        metadata=_doc(
            "readiness probe (provider metadata loaded, session store reachable, else 503); empty disables"
        ),
    )
    # Headers carrying the user to proxied apps (proxy) and to nginx (forward-auth 202).
    user_header: str = field(
        default="X-Forwarded-User",
        metadata=_doc("header carrying the user's email to proxied apps (proxy) and in forward-auth answers"),
    )
    email_header: str = field(
        default="X-Forwarded-Email", metadata=_doc("header carrying the email to proxied apps")
    )
    account_header: str = field(
        default="X-CQRS-Account",
        metadata=_doc("header carrying the CQRS account id to proxied apps and nginx"),
    )
    # Proxy mode (`cqrs-sso proxy`).
    upstream: str = field(
        default="",
        metadata=_doc(
            "proxy mode: where authenticated requests go; empty: a sign-in and forward-auth service only"
        ),
    )
    listen: str = field(default="127.0.0.1:8080", metadata=_doc("proxy mode: `host:port`"))
    trusted_proxies: tuple[str, ...] = field(
        default=(),
        metadata=_doc(
            "proxy mode: addresses or CIDRs whose `X-Forwarded-*` and `X-Real-IP` are believed; empty: nobody"
        ),
    )
    keep_alive_seconds: int = field(
        default=75,
        metadata=_doc(
            "proxy mode: how long an idle client connection is kept open; longer than the idle time-out of a load balancer in front (nginx's default: 75)"
        ),
    )
    upstream_timeout_seconds: float = field(
        default=30.0, metadata=_doc("proxy mode: no answer from the upstream within this → 504")
    )
    metrics_path: str = field(
        default="/metrics", metadata=_doc("proxy mode: Prometheus metrics; empty disables")
    )
    metrics_allow: tuple[str, ...] = field(
        default=("127.0.0.1/32", "::1/128"), metadata=_doc("proxy mode: networks that may read the metrics")
    )
    # The account_lookup string as configured (before it was resolved), for start-up lines.
    account_lookup_spec: str = field(default="", init=False, repr=False)

    def __post_init__(self) -> None:
        problems: list[str] = []
        self._normalise()
        self._check_provider(problems)
        self._check_secrets(problems)
        self._check_urls_and_paths(problems)
        self._check_numbers(problems)
        if isinstance(self.account_lookup, str):
            object.__setattr__(self, "account_lookup_spec", self.account_lookup)
            try:
                lookup = resolve_account_lookup(
                    self.account_lookup,
                    account_query=self.account_query,
                    timeout_seconds=self.account_lookup_timeout_seconds,
                )
                object.__setattr__(self, "account_lookup", lookup)
            except ConfigError as error:
                problems.extend(error.problems)
        elif not callable(self.account_lookup):
            problems.append("account_lookup: must be a callable or a 'module:function' string")
        if problems:
            raise ConfigError(problems)

    # -- validation, one concern each -------------------------------------------------------

    def _normalise(self) -> None:
        def put(name: str, value: object) -> None:
            object.__setattr__(self, name, value)

        if self.tenant and not self.issuer:
            put("issuer", f"{ENTRA_AUTHORITY}/{self.tenant}/v2.0")
        put("issuer", self.issuer.rstrip("/"))
        put("base_url", self.base_url.rstrip("/"))
        put("path_prefix", "/" + self.path_prefix.strip("/"))
        put("secret_keys", tuple(k for k in self.secret_keys if k))
        put(
            "allowed_email_domains",
            tuple(d.strip().lower().lstrip("@") for d in self.allowed_email_domains if d.strip()),
        )
        put("public_paths", tuple(p.strip() for p in self.public_paths if p.strip()))
        if self.token_auth_method is None:
            put("token_auth_method", "private_key_jwt" if self.private_key_file else "client_secret_basic")

    def _check_provider(self, problems: list[str]) -> None:
        if not self.issuer:
            problems.append("issuer: required (or set tenant for the NHSmail preset)")
        elif urlsplit(self.issuer).scheme != "https" and not _is_loopback(self.issuer):
            problems.append(f"issuer: must be https (http only on loopback), got {self.issuer!r}")
        if not self.client_id:
            problems.append("client_id: required (the id NHSmail registered for this app)")
        method = self.token_auth_method
        if method not in get_args(TokenAuthMethod):
            problems.append(f"token_auth_method: must be one of {', '.join(get_args(TokenAuthMethod))}")
        elif method == "private_key_jwt":
            self._load_private_key(problems)
        elif not self.client_secret:
            problems.append(f"client_secret: required for {method}")

    def _load_private_key(self, problems: list[str]) -> None:
        from .core.client_auth import ClientAssertionSigner

        if not self.private_key_pem:
            if not self.private_key_file:
                problems.append("private_key_file: required for private_key_jwt")
                return
            try:
                pem = Path(self.private_key_file).read_text(encoding="ascii")
            except (OSError, UnicodeDecodeError) as error:
                problems.append(f"private_key_file: cannot read {self.private_key_file!r}: {error}")
                return
            object.__setattr__(self, "private_key_pem", pem)
        try:
            ClientAssertionSigner.from_pem(self.private_key_pem)
        except ConfigError as error:
            problems.extend(error.problems)

    def _check_secrets(self, problems: list[str]) -> None:
        if not self.secret_keys:
            problems.append("secret_keys: required (random strings of at least 32 bytes, comma separated)")
        for position, key in enumerate(self.secret_keys, start=1):
            if len(key.encode("utf-8")) < _MIN_SECRET_KEY_BYTES:
                problems.append(f"secret_keys: key {position} is shorter than {_MIN_SECRET_KEY_BYTES} bytes")

    def _check_urls_and_paths(self, problems: list[str]) -> None:
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            problems.append(
                f"base_url: must be an origin like https://cqrs.example.nhs.uk, got {self.base_url!r}"
            )
        elif parts.path or parts.query or parts.fragment:
            problems.append("base_url: must be an origin only (no path, query or fragment)")
        elif parts.scheme == "http" and not _is_loopback(self.base_url):
            problems.append("base_url: must be https; plain http is only allowed on loopback for development")
        if not re.fullmatch(r"/[A-Za-z0-9._~-]+(/[A-Za-z0-9._~-]+)*", self.path_prefix):
            problems.append(f"path_prefix: must be a plain path such as /oauth2, got {self.path_prefix!r}")
        if not self.default_return_path.startswith("/") or self.default_return_path.startswith("//"):
            problems.append("default_return_path: must be a path on this site, such as /")
        self._check_proxy(problems)
        for name in ("health_path", "ready_path", "metrics_path"):
            value = getattr(self, name)
            if value and not re.fullmatch(r"/[A-Za-z0-9._~/-]*", value):
                problems.append(f"{name}: must be a plain path such as /healthz, or empty to disable")
        if not re.fullmatch(r"[A-Za-z0-9_]+", self.cookie_name):
            problems.append("cookie_name: letters, digits and underscores only")
        self._check_session_store(problems)
        if self.templates_dir and not Path(self.templates_dir).is_dir():
            problems.append(f"templates_dir: {self.templates_dir!r} is not a directory")

    def _check_session_store(self, problems: list[str]) -> None:
        store = self.session_store
        if store in ("cookie", "memory"):
            return
        parts = urlsplit(store)
        if parts.scheme not in ("redis", "rediss", "unix") or not (parts.hostname or parts.path):
            problems.append(
                "session_store: must be 'cookie', 'memory' or a redis:// / rediss:// URL, "
                f"got {self.display_store!r}"
            )
            return
        try:
            import redis  # noqa: F401
        except ImportError:
            problems.append(
                "session_store: a Redis store needs the 'redis' extra: "
                "pip install 'cqrs-sso-middleware[redis]'"
            )
        if not 0 < self.session_store_timeout_seconds <= 30:
            problems.append("session_store_timeout_seconds: must be between 0 and 30")
        if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", self.session_key_prefix):
            problems.append("session_key_prefix: letters, digits and _ . : - only, at most 64")

    @property
    def display_store(self) -> str:
        """``session_store`` fit for logs and pages: a password in the URL is masked."""
        return display_url(self.session_store)

    def _check_proxy(self, problems: list[str]) -> None:
        import ipaddress

        if self.upstream:
            parts = urlsplit(self.upstream)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                problems.append(
                    f"upstream: must be an http(s) URL like http://127.0.0.1:9000, got {self.upstream!r}"
                )
        host, _, port = self.listen.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            problems.append(f"listen: must be host:port, got {self.listen!r}")
        for name in ("trusted_proxies", "metrics_allow"):
            for network in getattr(self, name):
                try:
                    ipaddress.ip_network(network, strict=False)
                except ValueError:
                    problems.append(f"{name}: {network!r} is not an address or CIDR network")
        for name in ("user_header", "email_header", "account_header"):
            if not re.fullmatch(r"[A-Za-z0-9-]+", getattr(self, name)):
                problems.append(f"{name}: must be a header name (letters, digits, hyphens)")

    def _check_numbers(self, problems: list[str]) -> None:
        if self.session_idle_seconds < 60:
            problems.append("session_idle_seconds: must be at least 60")
        if self.session_max_seconds < self.session_idle_seconds:
            problems.append("session_max_seconds: must be at least session_idle_seconds")
        if self.account_cache_seconds < 0:
            problems.append("account_cache_seconds: must be 0 (no caching) or more")
        if self.account_recheck_seconds < 0:
            problems.append("account_recheck_seconds: must be 0 (never) or more")
        if not 0 < self.account_lookup_timeout_seconds <= 60:
            problems.append("account_lookup_timeout_seconds: must be between 0 and 60")
        if not 1 <= self.keep_alive_seconds <= 3600:
            problems.append("keep_alive_seconds: must be between 1 and 3600")
        if not 0 < self.http_timeout_seconds <= 60:
            problems.append("http_timeout_seconds: must be between 0 and 60")
        if not 0 <= self.clock_leeway_seconds <= 600:
            problems.append("clock_leeway_seconds: must be between 0 and 600")
        if "openid" not in self.scopes:
            problems.append("scopes: must include 'openid'")

    # -- derived values ---------------------------------------------------------------------

    @property
    def lookup(self) -> AccountLookup:
        """The account lookup as a callable (a string spec was resolved at construction)."""
        assert callable(self.account_lookup)
        return self.account_lookup

    @property
    def redirect_uri(self) -> str:
        return f"{self.base_url}{self.path_prefix}/callback"

    @property
    def is_https(self) -> bool:
        return self.base_url.startswith("https://")

    # -- loading ----------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        config_file: str | os.PathLike[str] | None = None,
        environ: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> Settings:
        """Arguments > environment > TOML file > defaults (see the module docstring)."""
        values: dict[str, Any] = {}
        problems: list[str] = []
        if config_file is not None:
            values.update(_read_toml(Path(config_file), problems))
        values.update(_read_environ(os.environ if environ is None else environ, problems))
        values.update({k: v for k, v in overrides.items() if v is not None})
        missing = [f.name for f in fields(cls) if f.name in _REQUIRED and f.name not in values]
        problems.extend(f"{name}: required (set {ENV_PREFIX}{name.upper()})" for name in missing)
        if problems:
            raise ConfigError(problems)
        try:
            return cls(**values)
        except TypeError as error:
            raise ConfigError([f"configuration: {error}"]) from error

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        return cls.load(None, environ, **overrides)

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str], **overrides: Any) -> Settings:
        return cls.load(path, {}, **overrides)


_REQUIRED = {"client_id", "secret_keys", "base_url", "account_lookup"}
_FIELD_TYPES = {
    "secret_keys": tuple,
    "allowed_email_domains": tuple,
    "public_paths": tuple,
    "scopes": tuple,
    "auto_redirect": bool,
    "sign_out_at_provider": bool,
    "session_idle_seconds": int,
    "session_max_seconds": int,
    "account_recheck_seconds": int,
    "account_cache_seconds": int,
    "clock_leeway_seconds": int,
    "account_lookup_timeout_seconds": float,
    "http_timeout_seconds": float,
    "trusted_proxies": tuple,
    "metrics_allow": tuple,
    "upstream_timeout_seconds": float,
    "session_store_timeout_seconds": float,
    "keep_alive_seconds": int,
}


def _coerce(name: str, raw: object, problems: list[str]) -> object:
    kind = _FIELD_TYPES.get(name, str)
    try:
        if kind is tuple:
            items = raw.split(",") if isinstance(raw, str) else list(raw)  # type: ignore[call-overload]
            return tuple(str(item).strip() for item in items if str(item).strip())
        if kind is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text not in {"1", "0", "true", "false", "yes", "no", "on", "off"}:
                raise ValueError(raw)
            return text in {"1", "true", "yes", "on"}
        if kind is int:
            return int(str(raw))
        if kind is float:
            return float(str(raw))
        return raw if isinstance(raw, str) else str(raw)
    except (TypeError, ValueError):
        problems.append(f"{name}: {raw!r} is not a valid {kind.__name__}")
        return None


def _field_names() -> set[str]:
    return {f.name for f in fields(Settings) if f.init}


def _read_environ(environ: Mapping[str, str], problems: list[str]) -> dict[str, object]:
    names = _field_names()
    values: dict[str, object] = {}
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        name = key[len(ENV_PREFIX) :]
        if name.endswith("_FILE") and name[:-5].lower() in names and name.lower() not in names:
            name = name[:-5]
            try:
                raw = Path(raw).read_text(encoding="utf-8").strip()
            except OSError as error:
                problems.append(f"{key}: cannot read {raw!r}: {error.strerror}")
                continue
        field_name = name.lower()
        if field_name in names:
            values[field_name] = _coerce(field_name, raw, problems)
    return values


def _read_toml(path: Path, problems: list[str]) -> dict[str, object]:
    try:
        with path.open("rb") as handle:
            document = tomllib.load(handle)
    except OSError as error:
        problems.append(f"config file {str(path)!r}: {error.strerror}")
        return {}
    except tomllib.TOMLDecodeError as error:
        problems.append(f"config file {str(path)!r}: not valid TOML: {error}")
        return {}
    names = _field_names()
    values: dict[str, object] = {}
    for key, raw in document.items():
        if key not in names:
            problems.append(f"config file: unknown key {key!r}")
            continue
        values[key] = _coerce(key, raw, problems)
    return values
