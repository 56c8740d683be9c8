"""The README's quick start and examples/README.md, followed literally in a fresh venv: pip
install, the built-in provider, each example's run command, and a sign-in through each.

The commands are read from the two READMEs (so the documents cannot drift from what is
tested) and run in a copy of the repository. The only change is the ports: 8000 and 8001
become two free ports, in the commands and in examples/demo-provider.toml alike."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from .helpers import HTML, LOCKED_PIP, form_fields, free_port, wait_until

pytestmark = pytest.mark.integration
ROOT = Path(__file__).parent.parent
BASH = "/bin/bash"
COPIED = ("cqrs_sso_middleware", "examples", "pyproject.toml", "setup.cfg", "README.md", "LICENSE", "docs")


def fenced_block(document: str, heading: str) -> list[str]:
    """The command lines of the first ```sh block under ``heading``."""
    section = document.split(heading, 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip()]


def consecutive_free_ports() -> tuple[int, int]:
    """An app port and the provider's, one above it (the provider allows port - 1)."""
    app = free_port(count=2)
    return app, app + 1


@dataclass
class Checkout:
    """A copy of the repository with a venv made by the README's own lines."""

    folder: Path
    app_port: int
    provider_port: int
    env: dict[str, str]

    def ported(self, command: str) -> str:
        return command.replace("8001", str(self.provider_port)).replace("8000", str(self.app_port))

    def run(self, command: str, cwd: Path | None = None, timeout: float = 600) -> None:
        result = subprocess.run(
            [BASH, "-c", self.ported(command)],
            cwd=cwd or self.folder,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert result.returncode == 0, f"{command}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"

    def start(self, command: str, cwd: Path | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [BASH, "-c", self.ported(command).removesuffix("&").strip()],
            cwd=cwd or self.folder,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )


def stop(process: subprocess.Popen[str]) -> str:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
    try:
        output, _ = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
    return output


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Checkout:
    """The README's first two lines: a fresh venv and `pip install '.[examples]'`."""
    folder = tmp_path_factory.mktemp("quick-start") / "cqrs-sso-middleware"
    folder.mkdir()
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, folder / name, ignore=shutil.ignore_patterns("__pycache__", "*.sqlite3"))
        elif source.exists():
            shutil.copy2(source, folder / name)
    app_port, provider_port = consecutive_free_ports()
    toml = folder / "examples" / "demo-provider.toml"
    toml.write_text(toml.read_text().replace("8001", str(provider_port)).replace("8000", str(app_port)))
    lines = fenced_block((ROOT / "README.md").read_text(), "## Try it with an example app")
    assert lines[0] == "python3 -m venv .venv-try && . .venv-try/bin/activate"
    assert lines[1] == "pip install '.[examples]'"
    # `python3` is this interpreter (the suite's Python 3.11); `. activate` is the PATH.
    subprocess.run([sys.executable, "-m", "venv", str(folder / ".venv-try")], check=True, timeout=120)
    bin_folder = folder / ".venv-try" / "bin"
    env = {
        "PATH": f"{bin_folder}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "VIRTUAL_ENV": str(folder / ".venv-try"),
        "HOME": os.environ.get("HOME", "/root"),
        **LOCKED_PIP,
    }
    checkout = Checkout(folder, app_port, provider_port, env)
    checkout.run(lines[1] + " --quiet --disable-pip-version-check")
    return checkout


@pytest.fixture
def provider_process(checkout: Checkout) -> Iterator[subprocess.Popen[str]]:
    lines = fenced_block((ROOT / "README.md").read_text(), "## Try it with an example app")
    assert lines[2] == "cqrs-sso provider --listen 127.0.0.1:8001 &"
    process = checkout.start(lines[2])
    discovery = f"http://127.0.0.1:{checkout.provider_port}/8e1f2b4c-3d5a-4f6e-9a7b-0c1d2e3f4a5b/v2.0"
    wait_until(lambda: _answers(discovery + "/.well-known/openid-configuration"), "the provider")
    yield process
    output = stop(process)
    assert "Traceback" not in output, output[-3000:]


def _answers(url: str) -> bool | None:
    try:
        return httpx.get(url, timeout=1).status_code < 500 or None
    except httpx.HTTPError:
        return None


def sign_in(origin: str, email: str = "gp.user@nhs.net") -> httpx.Response:
    """The user guide's steps 1 to 3 with an HTTP client; returns the page signed in."""
    with httpx.Client(timeout=20, follow_redirects=False) as browser:
        first = browser.get(origin + "/", headers=HTML)
        assert first.status_code in (302, 303), first.text[:500]
        page = browser.get(origin + first.headers["location"], headers=HTML)
        assert "Welcome to the Calculating Quality Reporting Service (CQRS)" in page.text
        start = browser.post(origin + "/oauth2/start", data=form_fields(page.text), headers=HTML)
        assert start.status_code == 303, start.text[:500]
        login = browser.get(start.headers["location"])
        fields = {**form_fields(login.text), "login": email, "passwd": "cqrs-demo", "action": "sign_in"}
        answer = browser.post(start.headers["location"].split("?")[0], data=fields)
        assert answer.status_code == 302, answer.text[:500]
        back = browser.get(answer.headers["location"], headers=HTML)
        assert back.status_code == 303
        return browser.get(origin + back.headers["location"], headers=HTML)


def run_example(checkout: Checkout, command: str, cwd: Path | None = None) -> str:
    """Start one example's run command, sign in through it, stop it; returns its output."""
    process = checkout.start(command, cwd)
    origin = f"http://127.0.0.1:{checkout.app_port}"
    try:
        wait_until(
            lambda: process.poll() is None and _answers(origin + "/healthz"), "the example", seconds=60
        )
        page = sign_in(origin)
        assert page.status_code == 200, page.text[:500]
        assert "Dr Gita Patel" in page.text and "CQRS-0001" in page.text
    finally:
        output = stop(process)
    assert "Traceback" not in output, output[-3000:]
    return output


def example_commands() -> dict[str, str]:
    table = (ROOT / "examples" / "README.md").read_text()
    rows = dict(re.findall(r"^\| \[(\w+)\]\([^)]*\) \| `([^`]+)` \|$", table, re.M))
    return {name: command for name, command in rows.items() if command}


def test_readme_flask_line_signs_a_user_in(checkout: Checkout, provider_process: object) -> None:
    lines = fenced_block((ROOT / "README.md").read_text(), "## Try it with an example app")
    output = run_example(checkout, lines[3])
    # No logging set up by the app: the sign-in is still on record, as JSON with a level.
    assert '"event": "sign_in_succeeded"' in output and '"level": "info"' in output


@pytest.mark.parametrize("example", ["Flask", "FastAPI"])
def test_each_example_runs_as_its_readme_says(
    checkout: Checkout, provider_process: object, example: str
) -> None:
    command = example_commands()[example]
    output = run_example(checkout, command)
    assert '"event": "sign_in_succeeded"' in output  # under uvicorn too, with no logging set up


def test_django_example_runs_as_its_readme_says(checkout: Checkout, provider_process: object) -> None:
    lines = fenced_block((ROOT / "examples" / "README.md").read_text(), "## Django")
    assert lines[0] == "cd examples/django_app"
    folder = checkout.folder / "examples" / "django_app"
    exports = lines[1]
    assert exports.startswith("export DJANGO_SECRET_KEY=$(cqrs-sso new-secret)")
    serve = lines[3].split("  #", 1)[0].strip()
    # Before migrate: the app refuses to start and says what to run.
    refused = subprocess.run(
        [BASH, "-c", f"{exports} && python -c 'import cqrs_demo.wsgi'"],
        cwd=folder,
        env={**checkout.env, "DJANGO_SETTINGS_MODULE": "cqrs_demo.settings"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode != 0
    assert "unapplied migration(s)" in refused.stderr and "python manage.py migrate" in refused.stderr
    checkout.run(f"{exports} && {lines[2]}", cwd=folder)
    run_example(checkout, f"{exports} && {serve}", cwd=folder)
