"""The five steps of the user guide in a real browser (Debian's Chromium, driven by Playwright), against
the demo stack in both its ASGI and WSGI variants; axe-core on every page; screenshots of
every page in ``test-artifacts/``."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cqrs_sso_middleware.demo import APPROVER, DEMO_PASSWORD, GP_USER, NEW_USER, DemoStack, start_demo

from ..helpers import require

ROOT = Path(__file__).parents[2]
CHROMIUM = "/usr/bin/chromium"
AXE = ROOT / "tests" / "interop" / "provider" / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
WCAG_21_A_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
# The demo's sign-in page offers two providers: step 2's "Sign In" is NHSmail's button.
NHSMAIL_BUTTON = "Sign in with NHSmail"
CIS2_BUTTON = "Sign in with your NHS Care Identity"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require(Path(CHROMIUM).exists(), "Debian's chromium is not installed (apt-get install chromium)")
    require(shutil.which("node") is not None and AXE.exists(), "axe-core is not installed (npm ci)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "the playwright Python package is not installed")
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield instance
        instance.close()


class Screens:
    """Screenshots and accessibility checks of every page a test visits."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.count = 0
        self.violations: dict[str, list[dict[str, Any]]] = {}
        folder.mkdir(parents=True, exist_ok=True)

    def capture(self, page: Any, name: str) -> None:
        self.count += 1
        page.screenshot(path=str(self.folder / f"{self.count:02d}-{name}.png"), full_page=True)
        page.add_script_tag(path=str(AXE))
        result = page.evaluate(
            "async (tags) => (await axe.run(document, {runOnly: {type: 'tag', values: tags}})).violations",
            WCAG_21_A_AA,
        )
        if result:
            self.violations[name] = [
                {"id": v["id"], "nodes": len(v["nodes"]), "help": v["help"]} for v in result
            ]

    def assert_accessible(self) -> None:
        assert not self.violations, json.dumps(self.violations, indent=1)


@pytest.fixture
def screens(request: pytest.FixtureRequest) -> Screens:
    return Screens(ARTIFACTS / request.node.name.replace("[", "-").replace("]", ""))


def test_five_user_guide_steps_with_the_mouse(browser: Any, demo: DemoStack, screens: Screens) -> None:
    context = browser.new_context(bypass_csp=True)  # lets the test inject axe-core
    page = context.new_page()
    app = demo.app_server.url

    page.goto(app + "/")  # step 1
    page.get_by_role("heading", name="Welcome to the Calculating Quality Reporting Service (CQRS)").wait_for()
    screens.capture(page, "step1-sign-in-page")

    page.get_by_role("button", name=NHSMAIL_BUTTON).click()  # step 2
    page.get_by_role("heading", name="Sign in with your NHSmail account").wait_for()
    screens.capture(page, "step2-nhsmail-login")

    page.get_by_label("Email Address").fill(GP_USER)  # step 4: wrong password, the provider refuses
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.get_by_text("Incorrect user ID or password.").wait_for()
    screens.capture(page, "step4-wrong-password")

    page.get_by_label("Password").fill(DEMO_PASSWORD)  # step 3
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.get_by_role("heading", name="Message centre").wait_for()
    assert "Dr Gita Patel" in page.content()
    screens.capture(page, "step3-message-centre")

    page.get_by_role("button", name="Sign out").click()  # the app's own button: one click
    page.get_by_role("heading", name="You have signed out of CQRS").wait_for()
    assert "You have also signed out of your NHSmail account" in page.inner_text("main")
    screens.capture(page, "signed-out")

    page.get_by_role("link", name="Sign in again").click()  # step 5
    page.get_by_role("button", name=NHSMAIL_BUTTON).click()
    page.get_by_label("Email Address").fill(NEW_USER)
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.get_by_role("heading", name="You do not have a CQRS account").wait_for()
    assert f"no CQRS account is associated with {NEW_USER}" in " ".join(page.inner_text("main").split())
    screens.capture(page, "step5-no-cqrs-account")
    page.reload()  # the page a callback ends on survives a reload
    page.get_by_role("heading", name="You do not have a CQRS account").wait_for()
    mailto = page.get_by_role("link", name="Ask the CQRS help desk for access").get_attribute("href")
    assert mailto is not None and mailto.startswith("mailto:support@cqrs.co.uk?subject=")

    # NHSmail remembers NEW_USER; "a different account" must ask again, not sign them in.
    page.get_by_role("button", name="Sign in with a different NHSmail account").click()
    page.get_by_role("heading", name="Sign in with your NHSmail account").wait_for()
    page.get_by_label("Email Address").fill(GP_USER)
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.get_by_role("heading", name="Message centre").wait_for()
    assert "Dr Gita Patel" in page.content()

    context.clear_cookies()  # another person: no NHSmail session in this browser
    page.goto(app + "/")  # the person cancels at NHSmail
    page.get_by_role("button", name=NHSMAIL_BUTTON).click()
    page.get_by_role("button", name="Cancel").click()
    page.get_by_role("heading", name="You cancelled signing in").wait_for()
    screens.capture(page, "cancelled")
    page.get_by_role("link", name="Sign In again").click()
    page.get_by_role("heading", name="Welcome to the Calculating Quality Reporting Service (CQRS)").wait_for()
    context.close()
    screens.assert_accessible()


def test_keyboard_only_sign_in(browser: Any, demo: DemoStack, screens: Screens) -> None:
    context = browser.new_context(bypass_csp=True)  # lets the test inject axe-core
    page = context.new_page()
    page.goto(demo.app_server.url + "/messages")

    def tab_to(text: str) -> None:
        for _ in range(25):
            page.keyboard.press("Tab")
            focused = page.evaluate("document.activeElement && document.activeElement.textContent.trim()")
            if focused == text:
                return
        raise AssertionError(f"Tab never reached {text!r}")

    tab_to(NHSMAIL_BUTTON)
    screens.capture(page, "keyboard-sign-in-focused")
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Sign in with your NHSmail account").wait_for()
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "login":
            break
    page.keyboard.type(GP_USER)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "passwd"
    page.keyboard.type(DEMO_PASSWORD)
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Message centre").wait_for()
    assert page.url.endswith("/messages")
    screens.capture(page, "keyboard-message-centre")
    context.close()
    screens.assert_accessible()


def test_second_tab_signs_in_while_the_first_is_mid_flow(browser: Any, demo: DemoStack) -> None:
    context = browser.new_context(bypass_csp=True)  # lets the test inject axe-core
    first, second = context.new_page(), context.new_page()
    app = demo.app_server.url
    first.goto(app + "/messages")
    first.get_by_role("button", name=NHSMAIL_BUTTON).click()
    first.get_by_label("Email Address").wait_for()  # the first tab waits at NHSmail

    second.goto(app + "/")
    second.get_by_role("button", name=NHSMAIL_BUTTON).click()
    second.get_by_label("Email Address").fill(GP_USER)
    second.get_by_label("Password").fill(DEMO_PASSWORD)
    second.get_by_role("button", name="Sign in", exact=True).click()
    second.get_by_role("heading", name="Message centre").wait_for()

    first.get_by_label("Email Address").fill(GP_USER)
    first.get_by_label("Password").fill(DEMO_PASSWORD)
    first.get_by_role("button", name="Sign in", exact=True).click()
    first.get_by_role("heading", name="Message centre").wait_for()
    assert first.url.endswith("/messages")
    context.close()


def test_unavailable_page_when_the_provider_is_down(browser: Any, screens: Screens) -> None:
    stack = start_demo(0, 0, "asgi")
    try:
        stack.provider_server.stop()
        context = browser.new_context(bypass_csp=True)  # lets the test inject axe-core
        page = context.new_page()
        page.goto(stack.app_server.url + "/")
        page.get_by_role("button", name=NHSMAIL_BUTTON).click()
        page.get_by_role("heading", name="Sign in is temporarily unavailable").wait_for()
        screens.capture(page, "unavailable")
        context.close()
    finally:
        stack.app_server.stop()
    screens.assert_accessible()


def sign_in(page: Any, app: str, email: str = GP_USER) -> None:
    page.goto(app + "/")
    page.get_by_role("button", name=NHSMAIL_BUTTON).click()
    page.get_by_label("Email Address").fill(email)
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.get_by_role("heading", name="Message centre").wait_for()


def test_shared_pc_sign_out_asks_the_next_person_for_a_password(
    browser: Any, demo: DemoStack, screens: Screens
) -> None:
    """The GP practice PC: sign in, sign out, press Sign In again — NHSmail must ask for the
    password, not let the next person straight in as the previous user."""
    context = browser.new_context(bypass_csp=True)
    page = context.new_page()
    app = demo.app_server.url
    sign_in(page, app)
    screens.capture(page, "signed-in-as-gp-user")
    page.goto(app + "/oauth2/sign_out")  # a sign-out link: a confirmation first
    page.get_by_role("heading", name="Sign out of CQRS").wait_for()
    screens.capture(page, "sign-out-confirm")
    # The provider's page moves on by script as soon as its iframes load, so its body may
    # be gone before it could be read here (its text is tested in tests/provider); what
    # matters here is that the browser went through NHSmail's sign-out.
    with page.expect_response(lambda r: "/oauth2/v2.0/logout" in r.url) as at_nhsmail:
        page.get_by_role("button", name="Sign out", exact=True).click()
    assert at_nhsmail.value.status == 200
    page.get_by_role("heading", name="You have signed out of CQRS").wait_for()
    assert "also signed out of your NHSmail account" in page.inner_text("main")
    screens.capture(page, "cqrs-signed-out")
    page.get_by_role("link", name="Sign in again").click()
    page.get_by_role("button", name=NHSMAIL_BUTTON).click()
    page.get_by_role("heading", name="Sign in with your NHSmail account").wait_for()
    assert page.get_by_label("Password").is_visible()
    screens.capture(page, "next-person-asked-for-password")
    context.close()
    screens.assert_accessible()


def test_signing_out_at_nhsmail_ends_the_cqrs_session_through_the_front_channel(
    browser: Any, demo: DemoStack, screens: Screens
) -> None:
    """Signed out of NHSmail elsewhere (another app, the portal): the provider's page loads
    our front-channel logout URL in an iframe, and the CQRS session ends with it."""
    context = browser.new_context(bypass_csp=True)
    page = context.new_page()
    app = demo.app_server.url
    sign_in(page, app)
    copied = [c for c in context.cookies() if c["name"] == "cqrs_sso"]
    with page.expect_response(lambda r: "/oauth2/frontchannel_logout" in r.url) as framed:
        page.goto(demo.provider.issuer.removesuffix("/v2.0") + "/oauth2/v2.0/logout")
    assert framed.value.status == 200
    page.get_by_role("heading", name="You have signed out of your NHSmail account").wait_for()
    screens.capture(page, "signed-out-at-nhsmail")
    page.goto(app + "/messages")
    page.get_by_role("heading", name="Welcome to the Calculating Quality Reporting Service (CQRS)").wait_for()
    assert "session has ended" in page.inner_text("main")
    screens.capture(page, "cqrs-session-ended-notice")
    context.add_cookies(copied)  # a copy of the old cookie: revoked in the store, opens nothing
    page.goto(app + "/messages")
    page.get_by_role("heading", name="Welcome to the Calculating Quality Reporting Service (CQRS)").wait_for()
    context.close()
    screens.assert_accessible()


def test_an_approver_reaches_approvals_is_refused_admin_and_steps_up_for_declarations(
    browser: Any, demo: DemoStack, screens: Screens
) -> None:
    """The demo's access rules in a real browser: a role from NHSmail opens /approvals, a
    role nobody has keeps /admin shut with the 403 page, and /declarations asks NHSmail for
    the password again although NHSmail still has a session. The first sign-in's token has
    no auth_time (Entra's default), so it is not known to be recent; the step-up's has."""
    context = browser.new_context(bypass_csp=True)
    page = context.new_page()
    app = demo.app_server.url
    demo.provider.sends_auth_time = False
    sign_in(page, app, APPROVER)
    demo.provider.sends_auth_time = True
    page.get_by_role("link", name="Approvals").click()
    page.get_by_role("heading", name="Approvals").wait_for()
    screens.capture(page, "approvals")

    page.goto(app + "/admin")
    page.get_by_role("heading", name="You do not have access to this part of CQRS").wait_for()
    assert "It needs the CQRS administrator role." in " ".join(page.inner_text("main").split())
    screens.capture(page, "admin-refused")

    page.goto(app + "/declarations")
    page.get_by_role("heading", name="Sign in again to continue").wait_for()
    screens.capture(page, "step-up")
    page.get_by_role("button", name="Sign In").click()
    page.get_by_role("heading", name="Sign in with your NHSmail account").wait_for()
    page.get_by_label("Email Address").fill(APPROVER)
    page.get_by_label("Password").fill(DEMO_PASSWORD)  # asked again: prompt=login
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.get_by_role("heading", name="Declarations").wait_for()
    assert page.url == app + "/declarations"
    screens.capture(page, "declarations-after-step-up")
    context.close()
    screens.assert_accessible()


def test_the_chooser_signs_in_with_either_provider(browser: Any, demo: DemoStack, screens: Screens) -> None:
    """Two buttons on the CQRS page; the NHS Care Identity one goes to the CIS2-like
    provider and back, with the person's national RBAC role mapped to a CQRS role; after
    signing out, the NHSmail button signs the same person in through NHSmail."""
    context = browser.new_context(bypass_csp=True)
    page = context.new_page()
    app = demo.app_server.url
    page.goto(app + "/approvals")
    page.get_by_role("button", name=CIS2_BUTTON).wait_for()
    screens.capture(page, "chooser")
    page.get_by_role("button", name=CIS2_BUTTON).click()
    page.get_by_role("heading", name="Sign in with your NHS Care Identity").wait_for()
    screens.capture(page, "cis2-login")
    page.get_by_label("Email Address").fill(APPROVER)
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.get_by_role("heading", name="Approvals").wait_for()
    roles = page.inner_text("main")
    assert "cis2:R8001" in roles and "CQRS.Approver" in roles  # role_mapping at work
    screens.capture(page, "cis2-approvals")
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("heading", name="You have signed out of CQRS").wait_for()
    page.get_by_role("link", name="Sign in again").click()
    page.get_by_role("button", name=NHSMAIL_BUTTON).click()
    page.get_by_role("heading", name="Sign in with your NHSmail account").wait_for()
    context.close()
    screens.assert_accessible()
