"""The independent provider (panva's oidc-provider, OpenID Certified) as a real process.

Skips with the reason when Node.js or the npm packages are missing, except under CI=true,
where a missing component is a failure.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc.jwk import RSAKey

from cqrs_sso_middleware import Settings
from cqrs_sso_middleware.serving import bind_socket

from ..conftest import ACCOUNTS, APPROVER, SENSITIVE, lookup_accounts
from ..helpers import APP_ORIGIN, AppClient, Journey, require

PROVIDER_DIR = Path(__file__).parent / "provider"
TENANT = "9a1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c5d"
PASSWORD = "interop-Pa55"
GP_USER, NEW_USER, MEMBER_USER = "gp.user@nhs.net", "new.user@nhs.net", "member.user@nhs.net"
ACCOUNTS.setdefault(MEMBER_USER, "CQRS-0002")
SENSITIVE.add(PASSWORD)


def new_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": secrets.token_hex(6), "use": "sig", "alg": "RS256"})


@dataclass
class OidcProvider:
    """A running oidc-provider process, restartable with other keys on the same port."""

    workdir: Path
    port: int
    keys: list[RSAKey]
    client_key: RSAKey
    secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    process: subprocess.Popen[str] | None = None
    extra_clients: list[dict[str, Any]] = field(default_factory=list)

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}/{TENANT}/v2.0"

    def config(self) -> dict[str, Any]:
        callback = f"{APP_ORIGIN}/oauth2/callback"
        common = {
            # The second URI: oidc-provider as the second of two providers (its own callback).
            "redirect_uris": [callback, f"{callback}/independent"],
            "post_logout_redirect_uris": [f"{APP_ORIGIN}/oauth2/sign_out"],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "subject_type": "pairwise",
        }
        return {
            "port": self.port,
            "tenant": TENANT,
            "jwks": {"keys": [k.as_dict(private=True) for k in self.keys]},
            "clients": [
                {
                    "client_id": "interop-basic",
                    "client_secret": self.secret,
                    "token_endpoint_auth_method": "client_secret_basic",
                    **common,
                },
                {
                    "client_id": "interop-post",
                    "client_secret": self.secret,
                    "token_endpoint_auth_method": "client_secret_post",
                    **common,
                },
                *(
                    {
                        "client_id": f"interop-pkjwt-{alg.lower()}",
                        "token_endpoint_auth_method": "private_key_jwt",
                        # Each client accepts only its algorithm: a PS256 client is proven
                        # to get PS256 assertions, not merely any valid one.
                        "token_endpoint_auth_signing_alg": alg,
                        "jwks": {"keys": [{**self.client_key.as_dict(private=False), "alg": alg}]},
                        **common,
                    }
                    for alg in ("PS256", "RS256")
                ),
                *self.extra_clients,
            ],
            "users": [
                {
                    "email": GP_USER,
                    "password": PASSWORD,
                    "name": "Dr Gita Patel",
                    "oid": "1d2c3b4a-0000-4000-8000-000000000001",
                    "include_email": True,
                },
                {
                    "email": NEW_USER,
                    "password": PASSWORD,
                    "name": "Nia Evans",
                    "oid": "1d2c3b4a-0000-4000-8000-000000000002",
                    "include_email": True,
                },
                {
                    "email": MEMBER_USER,
                    "password": PASSWORD,
                    "name": "Sam Member",
                    "oid": "1d2c3b4a-0000-4000-8000-000000000003",
                    "include_email": False,
                },
                {
                    "email": APPROVER,
                    "password": PASSWORD,
                    "name": "Alex Approver",
                    "oid": "1d2c3b4a-0000-4000-8000-000000000004",
                    "include_email": True,
                    "roles": ["CQRS.Approver"],
                },
            ],
        }

    def start(self) -> None:
        path = self.workdir / "config.json"
        path.write_text(json.dumps(self.config()))
        self.process = subprocess.Popen(
            [shutil.which("node") or "node", str(PROVIDER_DIR / "server.js"), str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.process.stdout is not None
        output = []
        for _ in range(50):  # oidc-provider prints development warnings first
            line = self.process.stdout.readline()
            output.append(line)
            if not line or line.startswith("listening"):
                break
        if not output[-1].startswith("listening"):
            self.stop()
            raise RuntimeError("oidc-provider did not start: " + "".join(output)[-2000:])
        # Keep reading its output so a chatty provider never blocks on a full pipe.
        threading.Thread(target=self.process.stdout.read, daemon=True).start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.issuer}/.well-known/openid-configuration", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("oidc-provider did not answer discovery")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()
        self.process = None

    def rotate_keys(self) -> None:
        """Restart signing with a new key; the old one is no longer published."""
        self.stop()
        self.keys = [new_key()]
        self.start()


@pytest.fixture(scope="session")
def oidc_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    require(shutil.which("node") is not None, "Node.js is not installed")
    require(
        (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir(),
        "oidc-provider is not installed (make test runs npm ci in tests/interop/provider)",
    )
    sock = bind_socket()
    port = sock.getsockname()[1]
    sock.close()  # node binds it next; a free port picked by the kernel just now
    instance = OidcProvider(tmp_path_factory.mktemp("oidc-provider"), port, [new_key()], new_key())
    instance.start()
    yield instance
    instance.stop()


@pytest.fixture
def idp(oidc_provider: OidcProvider) -> Iterator[OidcProvider]:
    yield oidc_provider
    if oidc_provider.process is None:  # a test stopped it
        oidc_provider.start()


@pytest.fixture(params=["client_secret_basic"])
def auth_method(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_settings(idp: OidcProvider, auth_method: str, tmp_path: Path) -> Callable[..., Settings]:
    """Overrides the suite's factory: the same clients and journeys, aimed at oidc-provider."""

    def build(**overrides: Any) -> Settings:
        key = secrets.token_urlsafe(32)
        SENSITIVE.add(key)
        values: dict[str, Any] = {
            "issuer": idp.issuer,
            "secret_keys": (key,),
            "base_url": APP_ORIGIN,
            "account_lookup": lookup_accounts,
            "http_timeout_seconds": 3.0,
            "token_auth_method": auth_method,
        }
        if auth_method.startswith("private_key_jwt"):
            # "private_key_jwt" is the default (PS256); "private_key_jwt:RS256" the older form.
            algorithm = auth_method.partition(":")[2] or "PS256"
            pem = tmp_path / "client.pem"
            pem.write_bytes(idp.client_key.as_pem(private=True))
            values.update(
                client_id=f"interop-pkjwt-{algorithm.lower()}",
                private_key_file=str(pem),
                token_auth_method="private_key_jwt",
                client_assertion_algorithm=algorithm,
            )
        else:
            client = "interop-basic" if auth_method == "client_secret_basic" else "interop-post"
            values.update(client_id=client, client_secret=idp.secret)
        values.update(overrides)
        return Settings(**values)

    return build


class InteropJourney(Journey):
    """oidc-provider's login is an interaction page, then an automatic consent."""

    def provider_login(
        self, authorize_url: str, email: str, password: str, action: str = "sign_in"
    ) -> httpx.Response:
        reply = self.provider.get(authorize_url)
        for _ in range(10):
            if reply.status_code in (302, 303) and not reply.headers["location"].startswith(APP_ORIGIN):
                reply = self.provider.get(httpx.URL(str(reply.url)).join(reply.headers["location"]))
                continue
            break
        if reply.status_code != 200 or "/interaction/" not in str(reply.url):
            return reply
        uid = str(reply.url).rsplit("/interaction/", 1)[1].split("/")[0]
        base = f"{reply.url.scheme}://{reply.url.host}:{reply.url.port}"
        if action == "cancel":
            reply = self.provider.post(f"{base}/interaction/{uid}/abort")
        else:
            reply = self.provider.post(
                f"{base}/interaction/{uid}/login", data={"login": email, "password": password}
            )
        for _ in range(10):
            if reply.status_code in (302, 303) and not reply.headers["location"].startswith(APP_ORIGIN):
                reply = self.provider.get(httpx.URL(str(reply.url)).join(reply.headers["location"]))
                continue
            break
        return reply


@pytest.fixture
def make_journey(make_client: Callable[..., AppClient]) -> Iterator[Callable[..., Journey]]:
    made: list[Journey] = []

    def build(client: AppClient | None = None, **overrides: Any) -> Journey:
        journey = InteropJourney(client or make_client(**overrides))
        made.append(journey)
        return journey

    yield build
    for journey in made:
        journey.close()
