"""FastAPI behind NHSmail sign-in.

Run it from the repository root (after ``pip install '.[examples]'``), against the built-in
NHSmail-like provider — see examples/README.md:

    cqrs-sso provider --listen 127.0.0.1:8001 &
    CQRS_SSO_CONFIG_FILE=examples/demo-provider.toml uvicorn examples.fastapi_app:app --port 8000

or ``python examples/fastapi_app.py --port 8000``. Open http://127.0.0.1:8000 and sign in as
gp.user@nhs.net, password cqrs-demo. For NHSmail itself, give the CQRS_SSO_* settings
(docs/configuration.md) instead of the demo file.
"""

import argparse

from fastapi import FastAPI, Request

from cqrs_sso_middleware import ASGISSOMiddleware, Settings
from cqrs_sso_middleware.metrics import SSOMetrics

app = FastAPI()


@app.get("/")
async def message_centre(request: Request) -> dict[str, str]:
    user = request.user  # Starlette BaseUser-compatible; also request.scope["cqrs_sso.user"]
    return {"welcome": user.display_name, "account": user.account.account_id}


# CQRS_SSO_* variables, and the TOML file CQRS_SSO_CONFIG_FILE names (if any). Prometheus
# metrics at /metrics, for the metrics_allow networks (loopback by default).
app.add_middleware(ASGISSOMiddleware, settings=Settings.from_env(), metrics=SSOMetrics())

if __name__ == "__main__":
    import uvicorn

    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--port", type=int, default=8000)
    uvicorn.run(app, host="127.0.0.1", port=options.parse_args().port)
