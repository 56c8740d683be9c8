"""Flask behind NHSmail sign-in. Configure with CQRS_SSO_* variables (see docs/configuration.md)."""

from flask import Flask, request

from cqrs_sso_middleware import Settings, SSOMiddleware

app = Flask(__name__)


@app.get("/")
def message_centre() -> str:
    user = request.environ["cqrs_sso.user"]  # also: request.environ["REMOTE_USER"] == user.email
    return f"Welcome {user.display_name}, CQRS account {user.account.account_id}"


# Reads CQRS_SSO_TENANT, _CLIENT_ID, _CLIENT_SECRET, _SECRET_KEYS, _BASE_URL, _ACCOUNT_LOOKUP.
app.wsgi_app = SSOMiddleware(app.wsgi_app, Settings.from_env())  # type: ignore[method-assign]
