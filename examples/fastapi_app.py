"""FastAPI behind NHSmail sign-in. Configure with CQRS_SSO_* variables (see docs/configuration.md)."""

from fastapi import FastAPI, Request

from cqrs_sso_middleware import ASGISSOMiddleware, Settings

app = FastAPI()


@app.get("/")
async def message_centre(request: Request) -> dict[str, str]:
    user = request.user  # Starlette BaseUser-compatible; also request.scope["cqrs_sso.user"]
    return {"welcome": user.display_name, "account": user.account.account_id}


# Reads CQRS_SSO_TENANT, _CLIENT_ID, _CLIENT_SECRET, _SECRET_KEYS, _BASE_URL, _ACCOUNT_LOOKUP.
app.add_middleware(ASGISSOMiddleware, settings=Settings.from_env())
