"""A new kind of provider is one profile module: nothing else in the package changes.

The module below stands for a third identity service (a Keycloak-like one, whose roles
come in ``realm_access.roles``). It is written to a folder of the test's own and added to
``core.profiles``' search path, as a new file in that package would be; the settings then
accept it by name, and a person signs in through both drivers with the roles it reads.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cqrs_sso_middleware import Settings
from cqrs_sso_middleware.core import profiles
from cqrs_sso_middleware.provider import NHSmailLikeProvider

from ..conftest import GP_USER, PASSWORD
from ..helpers import AppClient, Journey

KEYCLOAKISH = '''
"""``keycloakish``: roles in ``realm_access.roles``."""

from collections.abc import Mapping
from typing import Any

from cqrs_sso_middleware.core.identity import clean_roles
from cqrs_sso_middleware.core.profiles.base import ProviderProfile


class Keycloakish(ProviderProfile):
    kind = "keycloakish"
    label = "your Keycloak account"
    scopes = ("openid", "profile", "email", "roles")

    def roles(self, claims: Mapping[str, Any]) -> tuple[str, ...]:
        access = claims.get("realm_access")
        return clean_roles(access.get("roles", ())) if isinstance(access, dict) else ()


PROFILE = Keycloakish
'''


@pytest.fixture
def keycloakish(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    (tmp_path / "keycloakish.py").write_text(textwrap.dedent(KEYCLOAKISH), encoding="utf-8")
    monkeypatch.setattr(profiles, "__path__", [*profiles.__path__, str(tmp_path)])
    profiles.profile_kinds.cache_clear()
    yield
    profiles.profile_kinds.cache_clear()


def test_the_settings_name_a_new_kind_once_its_module_exists(
    keycloakish: None, make_settings: Callable[..., Settings]
) -> None:
    assert "keycloakish" in profiles.profile_kinds()
    settings = make_settings(provider_profile="keycloakish")
    assert settings.provider.label == "your Keycloak account"
    assert settings.provider.scopes == ("openid", "profile", "email", "roles")


def test_an_unknown_kind_is_refused_at_start_up(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(Exception, match="provider_profile: 'keycloakish' is not one of cis2, entra, generic"):
        make_settings(provider_profile="keycloakish")


def test_a_person_signs_in_with_the_roles_the_new_kind_reads(
    keycloakish: None,
    provider: NHSmailLikeProvider,
    make_client: Callable[..., AppClient],
    make_settings: Callable[..., Settings],
) -> None:
    provider.faults.claim_overrides = {"realm_access": {"roles": ["CQRS.Approver"]}}
    settings = make_settings(
        provider_profile="keycloakish",
        access_rules=({"paths": ["/approvals"], "roles": ["CQRS.Approver"]},),
    )
    journey = Journey(make_client(settings=settings))
    try:
        assert journey.sign_in(GP_USER, PASSWORD).status == 303
        assert journey.open("/approvals").status == 200
        assert journey.open("/messages").json()["roles"] == ["CQRS.Approver"]
    finally:
        journey.close()
