"""Where sessions live (a cookie, one process's memory, or Redis in any of its topologies),
how long they last, and the keys that protect them."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .redis_url import RedisLocation, RedisUrlError, parse_redis_url
from .schema_base import MIN_SECRET_KEY_BYTES, Problems, setting


@dataclass(frozen=True, kw_only=True)
class SessionSettings:
    """Where sessions live, how long they last, and the keys that protect them."""

    secret_keys: tuple[str, ...] = setting(
        (),
        "comma list (TOML: array); the first encrypts and signs, all are accepted (rotation); each ≥ 32 bytes (`cqrs-sso new-secret`)",
        secret=True,
        required=True,
    )
    session_store: str = setting(
        "cookie",
        "`cookie` (stateless, encrypted; cannot be revoked), `memory` (one process), or Redis: `redis://` / `rediss://` (one server), `redis+sentinel://h:p,h:p/master` (Sentinel), `redis+cluster://h:p,h:p` (Cluster); `rediss+…` for TLS — see docs/sessions.md",
        shown=False,
    )
    redis_password: str = setting(
        "", "the Redis data nodes' password; wins over one in the URL; never logged or shown", secret=True
    )
    redis_sentinel_password: str = setting(
        "", "the Sentinels' own password, when they require one (`requirepass` in sentinel.conf)", secret=True
    )
    redis_tls_ca_file: str = setting(
        "", "TLS (`rediss…`): the CA bundle that signed the Redis servers' certificates; empty: the system's"
    )
    redis_tls_cert_file: str = setting(
        "", "TLS: a client certificate, for servers that require one (`tls-auth-clients yes`)"
    )
    redis_tls_key_file: str = setting("", "TLS: the client certificate's private key")
    redis_tls_check_hostname: bool = setting(
        True, "TLS: the server certificate must name the host connected to"
    )
    revocation_wait_seconds: float = setting(
        0.5,
        "when the Redis primary has replicas, a sign-out or revocation waits this long for one replica to hold it (`WAIT 1`), so a fail-over cannot bring the session back; `0` never waits",
    )
    session_store_timeout_seconds: float = setting(2.0, "a slower store answer counts as failed (503)")
    session_key_prefix: str = setting(
        "cqrs_sso:", "prefix of every key in Redis, to share one Redis between services"
    )
    session_idle_seconds: int = setting(3600, "idle time-out")
    session_max_seconds: int = setting(43200, "absolute time-out")
    cookie_name: str = setting("cqrs_sso", "base cookie name (`__Host-` is prefixed on https)")

    @property
    def redis(self) -> RedisLocation | None:
        """The Redis ``session_store`` names, read (``None`` for ``cookie`` and ``memory``)."""
        if self.session_store in ("cookie", "memory"):
            return None
        return parse_redis_url(self.session_store)

    @property
    def display_store(self) -> str:
        """``session_store`` fit for logs and pages: a password in the URL is masked."""
        if self.session_store in ("cookie", "memory"):
            return self.session_store
        try:
            location = parse_redis_url(self.session_store)
        except RedisUrlError:
            return "(not a valid Redis URL)"
        return f"{location.display} ({location.summary})"

    def check(self, problems: Problems) -> None:
        if not self.secret_keys:
            problems.append(
                "secret_keys: required (random strings of at least 32 bytes: `cqrs-sso new-secret`)"
            )
        for position, key in enumerate(self.secret_keys, start=1):
            if len(key.encode("utf-8")) < MIN_SECRET_KEY_BYTES:
                problems.append(f"secret_keys: key {position} is shorter than {MIN_SECRET_KEY_BYTES} bytes")
        if self.session_idle_seconds < 60:
            problems.append("session_idle_seconds: must be at least 60")
        if self.session_max_seconds < self.session_idle_seconds:
            problems.append("session_max_seconds: must be at least session_idle_seconds")
        if not re.fullmatch(r"[A-Za-z0-9_]+", self.cookie_name):
            problems.append("cookie_name: letters, digits and underscores only")
        if self.session_store in ("cookie", "memory"):
            return
        self._check_redis(problems)

    def _check_redis(self, problems: Problems) -> None:
        try:
            location = parse_redis_url(self.session_store)
        except RedisUrlError as error:
            problems.append(f"session_store: {error}")
            return
        if not location.tls and (self.redis_tls_ca_file or self.redis_tls_cert_file):
            problems.append("redis_tls_ca_file: set, but the session_store URL is not a rediss… one")
        if bool(self.redis_tls_cert_file) != bool(self.redis_tls_key_file):
            problems.append(
                "redis_tls_cert_file: a client certificate needs its key (redis_tls_key_file), and the other way round"
            )
        if not 0 < self.session_store_timeout_seconds <= 30:
            problems.append("session_store_timeout_seconds: must be between 0 and 30")
        if not 0 <= self.revocation_wait_seconds <= 10:
            problems.append("revocation_wait_seconds: must be between 0 and 10")
        if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", self.session_key_prefix):
            problems.append("session_key_prefix: letters, digits and _ . : - only, at most 64")
