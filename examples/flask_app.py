"""Flask behind NHSmail sign-in.

Run it from the repository root (after ``pip install '.[examples]'``), against the built-in
NHSmail-like provider — see examples/README.md:

    cqrs-sso provider --listen 127.0.0.1:8001 &
    CQRS_SSO_CONFIG_FILE=examples/demo-provider.toml python examples/flask_app.py --port 8000

or ``flask --app examples/flask_app run --port 8000``. Open http://127.0.0.1:8000 and sign in
as gp.user@nhs.net, password cqrs-demo. For NHSmail itself, give the CQRS_SSO_* settings
(docs/configuration.md) instead of the demo file.
"""

import argparse

from flask import Flask, request

from cqrs_sso_middleware import Settings, SSOMiddleware
from cqrs_sso_middleware.metrics import SSOMetrics

app = Flask(__name__)


@app.get("/")
def message_centre() -> str:
    user = request.environ["cqrs_sso.user"]  # also: request.environ["REMOTE_USER"] == user.email
    return f"Welcome {user.display_name}, CQRS account {user.account.account_id}"


# CQRS_SSO_* variables, and the TOML file CQRS_SSO_CONFIG_FILE names (if any). Prometheus
# metrics at /metrics, for the metrics_allow networks (loopback by default).
app.wsgi_app = SSOMiddleware(  # type: ignore[method-assign]
    app.wsgi_app, Settings.from_env(), metrics=SSOMetrics()
)

if __name__ == "__main__":
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--port", type=int, default=8000)
    app.run(host="127.0.0.1", port=options.parse_args().port)
