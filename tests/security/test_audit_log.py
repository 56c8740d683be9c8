"""The audit log: one JSON line per security event, with a request id, and nothing secret."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable

import pytest

from cqrs_sso_middleware.provider import NHSmailLikeProvider

from ..conftest import GP_USER, NEW_USER, FakeClock
from ..helpers import HTML, Journey, form_fields


def lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "cqrs_sso.audit"]


def events(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    """The audit lines without their time and level (pinned on their own below)."""
    return [{k: v for k, v in line.items() if k not in ("time", "level")} for line in lines(caplog)]


@pytest.fixture(autouse=True)
def _audit_at_info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="cqrs_sso.audit")


def test_successful_sign_in_and_sign_out_are_audited(
    journey: Journey, caplog: pytest.LogCaptureFixture
) -> None:
    journey.sign_in(GP_USER)
    confirm = journey.app.get("/oauth2/sign_out", HTML)
    journey.app.post("/oauth2/sign_out", form_fields(confirm.text), HTML)
    names = [e["event"] for e in events(caplog)]
    assert names == ["sign_in_started", "sign_in_succeeded", "signed_out", "provider_sign_out_started"]
    succeeded = events(caplog)[1]
    assert succeeded["email"] == GP_USER
    assert len(str(succeeded["session"])) == 16  # a hash of the session id, never the id
    assert all(e["request_id"] not in ("", "-") for e in events(caplog))


def test_no_account_is_audited(journey: Journey, caplog: pytest.LogCaptureFixture) -> None:
    journey.sign_in(NEW_USER)
    assert events(caplog)[-1] == {
        "event": "sign_in_no_account",
        "email": NEW_USER,
        "oid": events(caplog)[-1]["oid"],
        "reason": "lookup_none",
        "request_id": events(caplog)[-1]["request_id"],
    }


def test_every_audit_line_has_an_iso_8601_utc_time_and_a_level(
    journey: Journey, caplog: pytest.LogCaptureFixture
) -> None:
    journey.sign_in(GP_USER)
    assert lines(caplog)
    for line in lines(caplog):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", str(line["time"]))
        assert line["level"] == "info"
    record = [r for r in caplog.records if r.name == "cqrs_sso.audit"][-1]
    assert record.levelno == logging.INFO


def test_provider_refusal_is_audited_with_its_error_code(
    journey: Journey, caplog: pytest.LogCaptureFixture
) -> None:
    state = journey.start().split("state=")[1].split("&")[0]
    journey.app.get(
        f"/oauth2/callback?state={state}&error=access_denied&error_description=AADSTS50105%3A+not+assigned",
        HTML,
    )
    failed = events(caplog)[-1]
    assert failed["event"] == "sign_in_failed"
    assert failed["reason"] == "provider_error"
    assert failed["error"] == "access_denied"
    assert failed["aadsts"] == 50105


def test_cancel_is_audited_as_a_cancel(journey: Journey, caplog: pytest.LogCaptureFixture) -> None:
    answer = journey.provider_login(journey.start(), "", "", action="cancel")
    journey.callback(answer.headers["location"])
    assert events(caplog)[-1]["event"] == "sign_in_cancelled"


def test_rejected_token_is_audited_with_its_reason(
    journey: Journey, provider: NHSmailLikeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    provider.faults.claim_overrides = {"aud": "another-app"}
    journey.sign_in(GP_USER)
    assert events(caplog)[-1] == {
        "event": "token_rejected",
        "reason": "wrong_audience",
        "request_id": events(caplog)[-1]["request_id"],
    }


def test_expired_session_is_audited(
    journey: Journey, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    journey.sign_in(GP_USER)
    clock.advance(3601)
    journey.open("/")
    assert events(caplog)[-1]["event"] == "session_expired"
    assert events(caplog)[-1]["reason"] == "idle"


def test_incoming_request_id_is_used_and_a_malformed_one_replaced(
    journey: Journey, caplog: pytest.LogCaptureFixture
) -> None:
    journey.app.get("/oauth2/callback?state=x&code=y", {**HTML, "X-Request-ID": "lb-7f3a-42"})
    assert events(caplog)[-1]["request_id"] == "lb-7f3a-42"
    journey.app.get("/oauth2/callback?state=x&code=y", {**HTML, "X-Request-ID": "bad id\r\nforged: line"})
    replaced = str(events(caplog)[-1]["request_id"])
    assert replaced != "bad id\r\nforged: line"
    assert len(replaced) == 16


def test_hostile_error_parameter_cannot_forge_log_lines(
    journey: Journey, caplog: pytest.LogCaptureFixture
) -> None:
    state = journey.start().split("state=")[1].split("&")[0]
    hostile = "access_denied%0A%7B%22event%22%3A%22sign_in_succeeded%22%7D"
    journey.app.get(f"/oauth2/callback?state={state}&error={hostile}&error_description=x%0Ay", HTML)
    record = [r for r in caplog.records if r.name == "cqrs_sso.audit"][-1]
    assert "\n" not in record.getMessage()
    assert events(caplog)[-1]["error"] == "invalid_error_code"


def test_audit_lines_never_carry_cookie_or_token_values(
    make_journey: Callable[..., Journey], provider: NHSmailLikeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    journey = make_journey()
    journey.sign_in(GP_USER)
    client = journey.app
    jar = client.test_app.cookiejar if client.driver == "wsgi" else client.client.cookies.jar  # type: ignore[attr-defined]
    values = [c.value for c in jar if c.value] + provider.issued_secrets[-3:]
    text = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("cqrs_sso"))
    assert values
    assert not [v for v in values if v and v in text]
