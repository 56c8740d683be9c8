"""Settings: from code, environment and TOML; one clear line per problem; precedence."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest

from cqrs_sso_middleware import Account, ConfigError, Identity, Runtime, Settings
from cqrs_sso_middleware.lookups import FileAccountLookup

KEY = secrets.token_urlsafe(32)


def lookup(identity: Identity) -> Account | None:
    return None


def valid(**changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "tenant": "37c354b2-85b0-47f5-b222-07b48d774ee3",
        "client_id": "client",
        "client_secret": "secret",
        "secret_keys": (KEY,),
        "base_url": "https://cqrs.example.nhs.uk",
        "account_lookup": lookup,
    }
    values.update(changes)
    return values


def problems(**changes: Any) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        Settings(**valid(**changes))
    return caught.value.problems


def test_nhsmail_preset_builds_the_entra_v2_issuer() -> None:
    settings = Settings(**valid())
    assert (
        settings.provider.issuer
        == "https://login.microsoftonline.com/37c354b2-85b0-47f5-b222-07b48d774ee3/v2.0"
    )
    assert settings.site.redirect_uri == "https://cqrs.example.nhs.uk/oauth2/callback"
    assert settings.provider.token_auth_method == "client_secret_basic"


@pytest.mark.parametrize(
    "changes,expected",
    [
        pytest.param({"tenant": "", "issuer": ""}, "issuer: required", id="no-issuer"),
        pytest.param({"issuer": "http://idp.example/v2.0"}, "issuer: must be https", id="http-issuer"),
        pytest.param({"client_id": ""}, "client_id: required", id="no-client-id"),
        pytest.param({"client_secret": ""}, "client_secret: required", id="no-secret"),
        pytest.param({"secret_keys": ()}, "secret_keys: required", id="no-keys"),
        pytest.param({"secret_keys": ("short",)}, "key 1 is shorter than 32 bytes", id="short-key"),
        pytest.param({"base_url": "cqrs.example"}, "base_url: must be an origin", id="not-a-url"),
        pytest.param({"base_url": "https://cqrs.example/app"}, "origin only", id="base-url-with-path"),
        pytest.param({"base_url": "http://cqrs.example.nhs.uk"}, "base_url: must be https", id="http-base"),
        pytest.param({"path_prefix": "/o auth"}, "path_prefix", id="bad-prefix"),
        pytest.param({"session_store": "postgres://x"}, "session_store", id="unsupported-store"),
        pytest.param({"session_store": "redis"}, "session_store", id="store-not-a-url"),
        pytest.param(
            {"session_store": "redis://x", "session_store_timeout_seconds": 0},
            "session_store_timeout",
            id="store-timeout",
        ),
        pytest.param(
            {"session_store": "redis://x", "session_key_prefix": "a b"}, "session_key_prefix", id="key-prefix"
        ),
        pytest.param({"session_idle_seconds": 10}, "session_idle_seconds", id="tiny-idle"),
        pytest.param({"session_max_seconds": 100}, "session_max_seconds", id="max-below-idle"),
        pytest.param(
            {"token_auth_method": "private_key_jwt"}, "private_key_file: required", id="pkjwt-no-key"
        ),
        pytest.param({"scopes": ("email",)}, "scopes: must include 'openid'", id="no-openid"),
        pytest.param({"token_auth_method": "client_secret_jwt"}, "is not one of", id="unknown-method"),
        pytest.param({"session_idle_seconds": "an hour"}, "is not a whole number", id="not-a-number"),
        pytest.param({"secret_keys": 42}, "is not a list", id="not-a-list"),
        pytest.param({"metrics_listen": "9090"}, "metrics_listen: must be host:port", id="metrics-listen"),
        pytest.param(
            {"listen": "0.0.0.0:8080", "metrics_listen": "127.0.0.1:8080"},
            "metrics_listen: must be on another port than listen",
            id="metrics-listen-same-port",
        ),
        pytest.param(
            {"forward_auth_uri_header": "X Original"},
            "forward_auth_uri_header: must be a header name",
            id="uri-hdr",
        ),
    ],
)
def test_each_problem_is_one_clear_line(changes: dict[str, Any], expected: str) -> None:
    lines = problems(**changes)
    assert any(expected in line for line in lines), lines
    assert all("\n" not in line for line in lines)


@pytest.mark.parametrize(
    "changes,expected",
    [
        pytest.param({"account_lookup": "nonexistent.module:fn"}, "cannot import", id="bad-dotted-path"),
        pytest.param({"account_lookup": "csv:/does/not/exist.csv"}, "cannot load csv", id="missing-csv"),
        pytest.param({"account_lookup": "just-a-word"}, "is not 'package.module:function'", id="bad-spec"),
        pytest.param(
            {"private_key_file": "/nope.pem"}, "private_key_file: no file '/nope.pem'", id="pkjwt-missing-key"
        ),
    ],
)
def test_what_settings_name_is_checked_when_the_runtime_is_built(
    changes: dict[str, Any], expected: str
) -> None:
    """Settings only read and validate; turning a lookup spec or a key file into a resource
    is the runtime's, at start-up, with the same one line per problem."""
    settings = Settings(**valid(**changes))
    with pytest.raises(ConfigError) as caught:
        Runtime.from_settings(settings)
    assert any(expected in line for line in caught.value.problems), caught.value.problems


def test_all_problems_are_reported_at_once() -> None:
    assert len(problems(client_id="", secret_keys=("short",), base_url="nope")) >= 3


def test_http_is_allowed_only_on_loopback() -> None:
    settings = Settings(
        **valid(base_url="http://127.0.0.1:8000", issuer="http://localhost:8001/t/v2.0", tenant="")
    )
    assert not settings.site.is_https


def env(**values: str) -> dict[str, str]:
    base = {
        "CQRS_SSO_TENANT": "37c354b2-85b0-47f5-b222-07b48d774ee3",
        "CQRS_SSO_CLIENT_ID": "client",
        "CQRS_SSO_CLIENT_SECRET": "secret",
        "CQRS_SSO_SECRET_KEYS": f"{KEY},{secrets.token_urlsafe(32)}",
        "CQRS_SSO_BASE_URL": "https://cqrs.example.nhs.uk",
        "CQRS_SSO_ACCOUNT_LOOKUP": "tests.core.test_settings:lookup",
    }
    base.update(values)
    return base


def test_from_environment_with_lists_booleans_and_numbers() -> None:
    settings = Settings.from_env(
        env(
            CQRS_SSO_ALLOWED_EMAIL_DOMAINS="nhs.net, @NHS.uk",
            CQRS_SSO_PUBLIC_PATHS="/static/*,/healthz",
            CQRS_SSO_AUTO_REDIRECT="true",
            CQRS_SSO_SESSION_IDLE_SECONDS="1800",
            CQRS_SSO_HELP_PHONE="0800 000 000",
        )
    )
    assert settings.lookup.allowed_email_domains == ("nhs.net", "nhs.uk")
    assert settings.site.public_paths == ("/static/*", "/healthz")
    assert settings.site.auto_redirect is True
    assert settings.session.session_idle_seconds == 1800
    assert settings.pages.help_phone == "0800 000 000"
    assert len(settings.session.secret_keys) == 2
    assert Runtime.from_settings(settings).lookups.lookup is lookup


def test_secrets_may_come_from_files(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-a-file\n")
    settings = Settings.from_env(env(CQRS_SSO_CLIENT_SECRET="", CQRS_SSO_CLIENT_SECRET_FILE=str(secret_file)))
    assert settings.provider.client_secret == "from-a-file"


def test_unreadable_secret_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CQRS_SSO_CLIENT_SECRET_FILE: cannot read"):
        Settings.from_env(env(CQRS_SSO_CLIENT_SECRET_FILE=str(tmp_path / "missing")))


@pytest.mark.parametrize(
    "name,value",
    [("CQRS_SSO_AUTO_REDIRECT", "perhaps"), ("CQRS_SSO_SESSION_IDLE_SECONDS", "an hour")],
)
def test_malformed_environment_values_are_reported(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"\\({name}\\): '{value}' is not"):
        Settings.from_env(env(**{name: value}))


def test_missing_required_values_name_their_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({})
    joined = str(caught.value)
    for name in (
        "CQRS_SSO_CLIENT_ID",
        "CQRS_SSO_SECRET_KEYS",
        "CQRS_SSO_BASE_URL",
        "CQRS_SSO_ACCOUNT_LOOKUP",
    ):
        assert name in joined


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cqrs-sso.toml"
    path.write_text(text)
    return path


def test_toml_file_and_precedence_flags_over_env_over_file(tmp_path: Path) -> None:
    path = write_toml(
        tmp_path,
        f"""
tenant = "37c354b2-85b0-47f5-b222-07b48d774ee3"
client_id = "from-file"
client_secret = "secret"
secret_keys = ["{KEY}"]
base_url = "https://cqrs.example.nhs.uk"
account_lookup = "tests.core.test_settings:lookup"
path_prefix = "/sso"
help_email = "file@example.nhs.uk"
allowed_email_domains = ["nhs.net"]
""",
    )
    assert Settings.load(path, {}).provider.client_id == "from-file"
    from_env = Settings.load(path, {"CQRS_SSO_CLIENT_ID": "from-env"})
    assert from_env.provider.client_id == "from-env"
    assert from_env.site.path_prefix == "/sso"
    flagged = Settings.load(path, {"CQRS_SSO_CLIENT_ID": "from-env"}, client_id="from-flag")
    assert flagged.provider.client_id == "from-flag"
    assert flagged.lookup.allowed_email_domains == ("nhs.net",)


@pytest.mark.parametrize(
    "text,expected",
    [
        pytest.param("not = [valid", "not valid TOML", id="syntax"),
        pytest.param('client_idd = "typo"', "unknown key 'client_idd'", id="unknown-key"),
        pytest.param('client_secert = "typo"', "did you mean 'client_secret'", id="did-you-mean"),
    ],
)
def test_bad_toml_is_reported(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        Settings.load(write_toml(tmp_path, text), {})


def identity(email: str, oid: str = "oid-1") -> Identity:
    return Identity(email=email, subject="s", issuer="i", object_id=oid)


def test_csv_lookup_matches_case_insensitively_with_attributes(tmp_path: Path) -> None:
    path = tmp_path / "accounts.csv"
    path.write_text("Email,account_id,organisation\nGP.User@nhs.net,CQRS-7,Test Surgery\n")
    lookup_file = FileAccountLookup(path, "csv")
    account = lookup_file(identity("gp.user@nhs.net"))
    assert isinstance(account, Account)
    assert account.account_id == "CQRS-7"
    assert account.attributes == {"organisation": "Test Surgery"}
    assert lookup_file(identity("other@nhs.net")) is None


def test_file_lookup_bound_to_oid_refuses_a_reassigned_address(tmp_path: Path) -> None:
    path = tmp_path / "accounts.json"
    path.write_text('[{"email": "gp.user@nhs.net", "account_id": "CQRS-7", "oid": "oid-1"}]')
    lookup_file = FileAccountLookup(path, "json")
    assert lookup_file(identity("gp.user@nhs.net", oid="oid-1")) is not None
    assert lookup_file(identity("gp.user@nhs.net", oid="someone-else")) is None


def test_csv_without_email_column_fails_at_start_up(tmp_path: Path) -> None:
    path = tmp_path / "accounts.csv"
    path.write_text("name,account_id\nx,1\n")
    with pytest.raises(ConfigError, match="no 'email' column"):
        Runtime.from_settings(Settings(**valid(account_lookup=f"csv:{path}")))


def test_csv_lookup_rereads_a_changed_file(tmp_path: Path) -> None:
    import os

    path = tmp_path / "accounts.csv"
    path.write_text("email\n")
    lookup_file = FileAccountLookup(path, "csv")
    assert lookup_file(identity("new@nhs.net")) is None
    path.write_text("email\nnew@nhs.net\n")
    os.utime(path, (1, 2_000_000_000))
    assert lookup_file(identity("new@nhs.net")) is not None


def test_repr_never_shows_secrets(tmp_path: Path) -> None:
    text = repr(Settings(**valid(client_secret="client-secret-value")))
    assert KEY not in text
    assert "client-secret-value" not in text
    assert "client_id='client'" in text


def test_store_password_is_never_shown() -> None:
    settings = Settings(**valid(session_store="redis://:hunter2secret@cache:6379/0", redis_password="pw-xyz"))
    assert settings.session.display_store == "redis://:***@cache:6379/0 (standalone)"
    assert "pw-xyz" not in repr(settings)
    assert "hunter2secret" not in repr(settings)


def test_configuration_doc_table_is_generated_from_the_settings_themselves() -> None:
    """Every setting is in docs/configuration.md, with its default and variable, and nothing
    documented there is not a setting. Regenerate with
    ``python -m cqrs_sso_middleware.settings_reference --write docs/configuration.md``."""
    from pathlib import Path

    from cqrs_sso_middleware.settings.loading import all_settings
    from cqrs_sso_middleware.settings_reference import with_table

    document = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert with_table(document) == document, "docs/configuration.md is out of date with Settings"
    for setting in all_settings():
        assert setting.field.metadata.get("doc"), f"{setting.name} has no description"
        assert f"| `{setting.name}` |" in document
