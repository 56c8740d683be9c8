"""What an error answer from the provider means, and so who must act.

An OAuth error (RFC 6749 §4.1.2.1 at the callback, §5.2 at the token endpoint) arrives as
``error`` and ``error_description``; Entra adds an AADSTS code to the description (and
``error_codes`` at the token endpoint) and, for a cancel, ``error_subcode=cancel``. Four
meanings, four answers:

* **cancelled** — the person pressed Cancel at NHSmail: "You cancelled signing in";
* **misconfigured** — the provider does not accept this deployment as it is configured
  (a wrong or expired secret, an unknown client id, a redirect URI or certificate it does
  not know, consent not given): nobody can sign in until a deployer acts, so it is logged
  at ERROR with the provider's own words, and the person is told sign-in to CQRS is not
  set up correctly — not to try again in a few minutes;
* **outage** — ``server_error``, ``temporarily_unavailable``: 503, try again;
* **refused** — anything else (the code was used, the person is not assigned…): the
  person's sign-in failed.

Only ``error`` and the codes decide; the description is free text, logged truncated and
never shown. RFC 6749's codes mean the same everywhere; what a service's own numbered codes
and cancel answer mean is its profile's (``AnswerRules``; Entra's in ``profiles.entra``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

# invalid_client: RFC 6749 §5.2, the client could not be authenticated; unauthorized_client:
# this client may not use this grant (Entra also answers it for an unknown client id).
MISCONFIGURATION_ERRORS = frozenset({"invalid_client", "unauthorized_client"})
OUTAGE_ERRORS = frozenset({"server_error", "temporarily_unavailable"})
_ERROR_CODE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_AADSTS = re.compile(r"AADSTS(\d{4,8})")

Meaning = Literal["cancelled", "misconfigured", "outage", "refused"]


@dataclass(frozen=True, slots=True)
class AnswerRules:
    """What one identity service's error answers mean beyond RFC 6749's own codes: its
    numbered codes for a deployment it does not accept (Entra's AADSTS table lives in
    ``profiles.entra``), and the ``(error, subcode)`` pair it sends for a cancel."""

    misconfiguration_codes: frozenset[int] = frozenset()
    cancel: tuple[str, str] | None = None


STANDARD_ANSWERS = AnswerRules()


@dataclass(frozen=True, slots=True)
class ProviderAnswer:
    """An error answer, read: only checked values, the description cut to 300 characters."""

    error: str
    description: str = ""
    aadsts: int | None = None
    subcode: str = ""
    rules: AnswerRules = STANDARD_ANSWERS

    @property
    def meaning(self) -> Meaning:
        if self.rules.cancel == (self.error, self.subcode):
            return "cancelled"
        if (
            self.error in MISCONFIGURATION_ERRORS
            or self.aadsts in self.rules.misconfiguration_codes
            or (self.error == "invalid_request" and "redirect" in self.description.lower())
        ):
            return "misconfigured"
        if self.error in OUTAGE_ERRORS:
            return "outage"
        return "refused"

    def audit_fields(self) -> dict[str, object]:
        return {"error": self.error, "aadsts": self.aadsts, "description": self.description}


def read_answer(
    error: object,
    description: object = "",
    subcode: object = "",
    codes: object = None,
    rules: AnswerRules = STANDARD_ANSWERS,
) -> ProviderAnswer:
    """A ``ProviderAnswer`` from untrusted values (query parameters or a JSON body)."""
    error_text = error if isinstance(error, str) and _ERROR_CODE.fullmatch(error) else "invalid_error_code"
    description_text = description[:300] if isinstance(description, str) else ""
    code = None
    if isinstance(codes, list) and codes and isinstance(codes[0], int) and not isinstance(codes[0], bool):
        code = codes[0]
    else:
        found = _AADSTS.search(description_text)
        code = int(found.group(1)) if found else None
    subcode_text = subcode if isinstance(subcode, str) and _ERROR_CODE.fullmatch(subcode) else ""
    return ProviderAnswer(error_text, description_text, code, subcode_text, rules)


def answer_from_query(
    params: Mapping[str, list[str]], rules: AnswerRules = STANDARD_ANSWERS
) -> ProviderAnswer:
    def first(name: str) -> str:
        return params.get(name, [""])[0]

    return read_answer(first("error"), first("error_description"), first("error_subcode"), rules=rules)
