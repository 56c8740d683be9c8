"""The package as a deployer gets it: a wheel that installs and runs, and the helper commands."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
import venv
from pathlib import Path
from typing import Any

import pytest

from cqrs_sso_middleware import Settings, __version__
from cqrs_sso_middleware.core.oidc.client_auth import ClientAssertionSigner
from cqrs_sso_middleware.credentials import make_certificate, new_secret
from cqrs_sso_middleware.provider import NHSmailLikeProvider

from .conftest import CLIENT_ID, CLIENT_SECRET
from .helpers import LOCKED_PIP

ROOT = Path(__file__).parents[1]


def run(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=600, env=env)


def test_version_flag_names_the_single_sourced_version() -> None:
    result = run(sys.executable, "-m", "cqrs_sso_middleware.cli", "--version")
    assert result.stdout.strip() == f"cqrs-sso {__version__}"


def test_new_secret_is_a_valid_secret_key_and_never_the_same() -> None:
    first, second = new_secret(), new_secret()
    assert first != second and len(first) >= 64
    settings = Settings(
        issuer="https://login.microsoftonline.com/t/v2.0",
        client_id="c",
        client_secret="s",
        secret_keys=(first,),
        base_url="https://cqrs.example.nhs.uk",
        account_lookup=lambda identity: None,
    )
    assert settings.session.secret_keys == (first,)


def _assertion_header(signer: ClientAssertionSigner) -> dict[str, Any]:
    assertion = signer.assertion(
        "client", "https://login.microsoftonline.com/t/oauth2/v2.0/token", 1_800_000_000
    )
    return dict(json.loads(base64.urlsafe_b64decode(assertion.split(".")[0] + "==")))


def test_client_assertion_is_ps256_with_the_sha256_thumbprint_by_default(tmp_path: Path) -> None:
    """Microsoft's current guidance for certificate credentials: PS256 and x5t#S256."""
    credential = make_certificate(tmp_path / "creds")
    assert stat.S_IMODE(credential.key_file.stat().st_mode) == 0o600
    header = _assertion_header(ClientAssertionSigner.from_pem(credential.key_file.read_text()))
    assert header["alg"] == "PS256"
    assert header["x5t#S256"] == credential.x5t_s256  # Entra finds the certificate by this
    assert "x5t" not in header
    with pytest.raises(FileExistsError):
        make_certificate(tmp_path / "creds")  # never overwrites a credential


def test_client_assertion_can_be_rs256_with_the_sha1_thumbprint(tmp_path: Path) -> None:
    credential = make_certificate(tmp_path / "creds")
    header = _assertion_header(ClientAssertionSigner.from_pem(credential.key_file.read_text(), "RS256"))
    assert header["alg"] == "RS256"
    assert header["x5t"] == header["kid"] == credential.x5t
    assert len(credential.thumbprint_sha1) == 40


def test_certificate_command_prints_the_settings_to_use(tmp_path: Path) -> None:
    result = run(sys.executable, "-m", "cqrs_sso_middleware.cli", "certificate", "--out", str(tmp_path / "c"))
    assert result.returncode == 0, result.stderr
    assert "CQRS_SSO_TOKEN_AUTH_METHOD=private_key_jwt" in result.stdout
    assert f"CQRS_SSO_PRIVATE_KEY_FILE={tmp_path / 'c' / 'cqrs-sso-key.pem'}" in result.stdout
    again = run(sys.executable, "-m", "cqrs_sso_middleware.cli", "certificate", "--out", str(tmp_path / "c"))
    assert again.returncode == 1 and "refusing to overwrite" in again.stderr


@pytest.mark.integration
def test_wheel_builds_cleanly_installs_in_a_new_venv_and_runs(
    tmp_path: Path, provider_server: NHSmailLikeProvider
) -> None:
    """python -m build makes an sdist and a wheel without deprecation warnings; the wheel,
    installed with its dependencies into a fresh venv, runs --version and check-config."""
    dist = tmp_path / "dist"
    locked = {**os.environ, **LOCKED_PIP}
    built = run(
        sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(dist), str(ROOT), env=locked
    )
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    output = built.stdout + built.stderr
    assert "deprecat" not in output.lower(), [line for line in output.splitlines() if "eprecat" in line]
    wheels = list(dist.glob("cqrs_sso_middleware-*.whl"))
    assert len(wheels) == 1 and list(dist.glob("cqrs_sso_middleware-*.tar.gz"))
    assert f"-{__version__}-" in wheels[0].name
    target = tmp_path / "venv"
    venv.create(target, with_pip=True)
    python = target / "bin" / "python"
    installed = run(str(python), "-m", "pip", "install", "--quiet", str(wheels[0]), env=locked)
    assert installed.returncode == 0, installed.stderr[-2000:]
    cli = str(target / "bin" / "cqrs-sso")
    assert run(cli, "--version").stdout.strip() == f"cqrs-sso {__version__}"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "CQRS_SSO_ISSUER": provider_server.issuer,
        "CQRS_SSO_CLIENT_ID": CLIENT_ID,
        "CQRS_SSO_CLIENT_SECRET": CLIENT_SECRET,
        "CQRS_SSO_SECRET_KEYS": new_secret(),
    }
    # From another folder: the example's csv: path is relative to the TOML file itself.
    config = str(ROOT / "examples" / "demo-provider.toml")
    checked = run(cli, "check-config", "--config", config, cwd=tmp_path, env=env)
    assert checked.returncode == 0, checked.stderr
    assert "provider ok" in checked.stdout
    # The packaged pages and stylesheet are in the wheel, not only in the source tree.
    pages = run(
        str(python),
        "-c",
        "from cqrs_sso_middleware.pages import JinjaPages; print(len(JinjaPages().asset('cqrs.css')))",
    )
    assert int(pages.stdout) > 100
