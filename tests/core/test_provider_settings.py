"""``[[providers]]``: several providers in TOML, a variable or code, each checked as a
provider of its own; the flat settings keep meaning one provider named ``nhsmail``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cqrs_sso_middleware.core.errors import ConfigError
from cqrs_sso_middleware.settings import Settings

BASE = {"base_url": "https://cqrs.example.nhs.uk", "secret_keys": ("k" * 43,), "account_lookup": "csv:x.csv"}
NHSMAIL = {"name": "nhsmail", "tenant": "nhs.net", "client_id": "app-1", "client_secret": "s1"}
CIS2 = {
    "name": "cis2",
    "profile": "cis2",
    "issuer": "https://am.nhsint.auth-ptl.cis2.spineservices.nhs.uk/openam/oauth2/realms/root/realms/NHSIdentity/realms/Healthcare",
    "client_id": "app-2",
    "client_secret": "s2",
}


def problems(**values: Any) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        Settings(**{**BASE, **values})
    return raised.value.problems


def test_the_flat_settings_are_one_provider_named_nhsmail() -> None:
    settings = Settings(**BASE, tenant="nhs.net", client_id="app-1", client_secret="s")
    (only,) = settings.providers
    assert (only.provider_name, only.provider_profile, only.label) == ("nhsmail", "entra", "NHSmail")
    assert only.scopes == ("openid", "profile", "email") and settings.provider is only


def test_each_profile_brings_its_scopes_and_label() -> None:
    settings = Settings(**BASE, providers=[NHSMAIL, CIS2])
    assert [p.provider_name for p in settings.providers] == ["nhsmail", "cis2"]
    cis2 = settings.providers[1]
    assert "nationalrbacaccess" in cis2.scopes and cis2.label == "your NHS Care Identity"
    assert cis2.profile.authorization_params() == {"acr_values": "AAL2_OR_AAL3_ANY"}


def test_providers_from_toml_and_from_a_json_variable_are_the_same(tmp_path: Path) -> None:
    (tmp_path / "key.pem").write_text("x")
    toml = tmp_path / "cqrs.toml"
    toml.write_text(
        'base_url = "https://cqrs.example.nhs.uk"\nsecret_keys = ["' + "k" * 43 + '"]\n'
        'account_lookup = "csv:x.csv"\n'
        '[[providers]]\nname = "nhsmail"\ntenant = "nhs.net"\nclient_id = "app-1"\nclient_secret = "s1"\n'
        '[[providers]]\nname = "cis2"\nprofile = "cis2"\nissuer = "https://cis2.example.nhs.uk/oauth2"\n'
        'client_id = "app-2"\nprivate_key_file = "key.pem"\nacr_values = "AAL3_ANY"\n'
        '[providers.role_mapping]\n"cis2:R8000" = "practice_user"\n'
    )
    from_file = Settings.from_toml(toml)
    assert from_file.providers[1].private_key_file == str(tmp_path / "key.pem")  # relative to the file
    assert dict(from_file.providers[1].role_mapping) == {"cis2:R8000": "practice_user"}
    variable = json.dumps([NHSMAIL, {**CIS2, "acr_values": "AAL3_ANY"}])
    from_env = Settings.from_env(
        {
            "CQRS_SSO_PROVIDERS": variable,
            "CQRS_SSO_BASE_URL": BASE["base_url"],
            "CQRS_SSO_SECRET_KEYS": "k" * 43,
            "CQRS_SSO_ACCOUNT_LOOKUP": "csv:x.csv",
        }
    )
    assert [p.provider_name for p in from_env.providers] == ["nhsmail", "cis2"]
    assert from_env.providers[1].profile.authorization_params() == {"acr_values": "AAL3_ANY"}


@pytest.mark.parametrize(
    "providers,extra,expected",
    [
        pytest.param([NHSMAIL], {"client_id": "x"}, "not both", id="flat-and-list"),
        pytest.param(
            [NHSMAIL, {**CIS2, "name": "nhsmail"}], {}, "two providers are named 'nhsmail'", id="same-name"
        ),
        pytest.param(
            [{**CIS2, "profil": "cis2"}], {}, "unknown key 'profil' (did you mean 'profile'?)", id="typo"
        ),
        pytest.param(
            [{**CIS2, "profile": "okta"}], {}, "provider_profile: 'okta' is not one of", id="profile"
        ),
        pytest.param([{**CIS2, "acr_values": "AAL9"}], {}, "acr_values: 'AAL9' is not one of", id="acr"),
        pytest.param([{**CIS2, "name": "Bad Name"}], {}, "must be 1-32 lower-case", id="name"),
        pytest.param(
            [{**CIS2, "client_secret": ""}], {}, "providers[1] (cis2): client_secret: required", id="where"
        ),
        pytest.param(
            [{**CIS2, "extra_authorize_params": {"redirect_uri": "https://evil.example"}}],
            {},
            "'redirect_uri' may not be set",
            id="extra-param-not-allowed",
        ),
        pytest.param(
            [{**CIS2, "client_secret": ["s", "t"]}], {}, "client_secret: (hidden)", id="secret-not-shown"
        ),
    ],
)
def test_a_bad_provider_table_is_named_in_its_problem(
    providers: list[Any], extra: dict[str, Any], expected: str
) -> None:
    found = problems(providers=providers, **extra)
    assert any(expected in problem for problem in found), found


def test_allowed_extra_parameters_reach_the_authorization_request() -> None:
    settings = Settings(**BASE, providers=[{**NHSMAIL, "extra_authorize_params": {"domain_hint": "nhs.net"}}])
    assert dict(settings.provider.extra_authorize_params) == {"domain_hint": "nhs.net"}
