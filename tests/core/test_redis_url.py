"""The Redis URLs ``session_store`` accepts, read without connecting: topology, nodes,
service name, database, TLS, and a display that never shows a password."""

from __future__ import annotations

import pytest

from cqrs_sso_middleware import Settings
from cqrs_sso_middleware.core.errors import ConfigError
from cqrs_sso_middleware.settings.redis_url import RedisUrlError, parse_redis_url


@pytest.mark.parametrize(
    "url,topology,tls,nodes,service,db",
    [
        ("redis://cache:6379/0", "standalone", False, (), "", 0),
        ("rediss://cache:6380/0", "standalone", True, (), "", 0),
        ("unix:///run/redis.sock?db=2", "standalone", False, (), "", 0),
        ("redis+sentinel://s1:26379,s2:26379,s3:26379/mymaster", "sentinel", False,
         (("s1", 26379), ("s2", 26379), ("s3", 26379)), "mymaster", 0),
        ("rediss+sentinel://:pw@s1:26379/mymaster/3", "sentinel", True, (("s1", 26379),), "mymaster", 3),
        ("redis+sentinel://[::1]:26379/cqrs", "sentinel", False, (("::1", 26379),), "cqrs", 0),
        ("redis+cluster://n1:7000,n2:7001", "cluster", False, (("n1", 7000), ("n2", 7001)), "", 0),
        ("rediss+cluster://user:pw@n1:7000/", "cluster", True, (("n1", 7000),), "", 0),
    ],
)  # fmt: skip
def test_each_topology_is_read(
    url: str, topology: str, tls: bool, nodes: tuple[tuple[str, int], ...], service: str, db: int
) -> None:
    location = parse_redis_url(url)
    assert (location.topology, location.tls, location.nodes) == (topology, tls, nodes)
    assert (location.service_name, location.db) == (service, db)


@pytest.mark.parametrize(
    "url,words",
    [
        ("memcached://cache:11211", "must be 'cookie', 'memory' or a redis://"),
        ("redis+sentinel://s1:26379", "needs the service (master) name"),
        ("redis+sentinel://s1:26379/m/0/x", "has more after /service_name/db"),
        ("redis+sentinel://s1:26379/m/zero", "database 'zero' is not a number"),
        ("redis+sentinel://s1/m", "'s1' is not host:port"),
        ("redis+sentinel://s1:99999/m", "'s1:99999' is not host:port"),
        ("redis+cluster://n1:7000/2", "a Redis Cluster has one database"),
        ("redis+cluster:///", "names no host:port"),
    ],
)
def test_a_url_that_is_not_one_of_the_grammars_says_what_is_wrong(url: str, words: str) -> None:
    with pytest.raises(RedisUrlError, match=words.replace("(", r"\(").replace(")", r"\)")):
        parse_redis_url(url)


@pytest.mark.parametrize(
    "url,shown",
    [
        (
            "redis+sentinel://:s3cret@s1:26379,s2:26379/mymaster",
            "redis+sentinel://:***@s1:26379,s2:26379/mymaster",
        ),
        ("rediss+cluster://ops:s3cret@n1:7000", "rediss+cluster://ops:***@n1:7000"),
        ("rediss://:s3cret@cache:6380/0", "rediss://:***@cache:6380/0"),
        ("redis+sentinel://[::1]:26379/m/2", "redis+sentinel://[::1]:26379/m/2"),
    ],
)
def test_the_display_never_shows_a_password(url: str, shown: str) -> None:
    assert parse_redis_url(url).display == shown


def test_the_summary_names_the_topology() -> None:
    assert (
        parse_redis_url("rediss+sentinel://a:1,b:2,c:3/cqrs").summary
        == "sentinel (master cqrs, 3 sentinels, TLS)"
    )
    assert parse_redis_url("redis+cluster://a:1,b:2").summary == "cluster (2 seed nodes)"
    assert parse_redis_url("redis://a:1/0").summary == "standalone"


def _problems(**values: object) -> list[str]:
    base: dict[str, object] = {
        "issuer": "https://login.microsoftonline.com/5b7c9d1e-2f3a-4b5c-8d6e-7f8091a2b3c4/v2.0",
        "client_id": "c",
        "client_secret": "s",
        "secret_keys": ("k" * 40,),
        "base_url": "https://cqrs.example.nhs.uk",
        "account_lookup": lambda identity: None,
    }
    try:
        Settings(**{**base, **values})
    except ConfigError as error:
        return error.problems
    return []


def test_settings_name_a_bad_redis_url_and_tls_files_without_tls() -> None:
    assert _problems(session_store="redis+sentinel://s1:26379") == [
        "session_store: needs the service (master) name: redis+sentinel://host:port/mymaster"
    ]
    assert _problems(session_store="redis://cache:6379/0", redis_tls_ca_file="/ca.crt") == [
        "redis_tls_ca_file: set, but the session_store URL is not a rediss… one"
    ]
    assert _problems(session_store="rediss://cache:6380/0", redis_tls_cert_file="/c.crt")[0].startswith(
        "redis_tls_cert_file: a client certificate needs its key"
    )
    assert _problems(session_store="redis+cluster://n1:7000,n2:7001", revocation_wait_seconds=0.2) == []


def test_the_sentinel_password_is_a_secret_never_shown() -> None:
    settings = Settings(
        issuer="https://login.microsoftonline.com/5b7c9d1e-2f3a-4b5c-8d6e-7f8091a2b3c4/v2.0",
        client_id="c",
        client_secret="s",
        secret_keys=("k" * 40,),
        base_url="https://cqrs.example.nhs.uk",
        account_lookup=lambda identity: None,
        session_store="redis+sentinel://:data-pw@s1:26379/m",
        redis_sentinel_password="sentinel-pw",
    )
    shown = repr(settings) + settings.session.display_store
    assert "sentinel-pw" not in shown and "data-pw" not in shown
