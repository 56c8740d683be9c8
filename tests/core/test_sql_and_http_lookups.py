"""The sql: and http: account lookups, against SQLite, the machine's PostgreSQL and a real
HTTP endpoint on loopback."""

from __future__ import annotations

import secrets
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cqrs_sso_middleware import Account, ConfigError, Identity, Runtime, Settings
from cqrs_sso_middleware.serving import BackgroundASGIServer, bind_socket

from ..helpers import require

POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
QUERY = "SELECT account_id, organisation FROM {table} WHERE lower(email) = :email"


OPENED: list[Any] = []


@pytest.fixture(autouse=True)
def _close_lookups() -> Iterator[None]:
    yield
    while OPENED:
        OPENED.pop().close()


def configured_lookup(**changes: Any) -> Callable[[Identity], Any]:
    """The lookup a deployment with these settings runs (built by the runtime, as at start)."""
    values: dict[str, Any] = {
        "issuer": "https://login.microsoftonline.com/t/v2.0",
        "client_id": "c",
        "client_secret": "s",
        "secret_keys": ("k" * 40,),
        "base_url": "https://cqrs.example.nhs.uk",
        **changes,
    }
    runtime = Runtime.from_settings(Settings(**values))
    OPENED.append(runtime.lookups)
    return runtime.lookups.lookup


def person(email: str = "gp.user@nhs.net", oid: str = "oid-1") -> Identity:
    return Identity(email=email, subject="sub", issuer="i", object_id=oid, tenant_id="tid")


def create_table(url: str, table: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            text(f"CREATE TABLE {table} (email TEXT, account_id TEXT, organisation TEXT, oid TEXT)")
        )
        connection.execute(
            text(f"INSERT INTO {table} VALUES (:e, :a, :o, :oid)"),  # noqa: S608 - our own table name
            [
                {"e": "GP.User@nhs.net", "a": "CQRS-7", "o": "Test Surgery", "oid": "oid-1"},
                {"e": "twice@nhs.net", "a": "A", "o": "x", "oid": None},
                {"e": "twice@nhs.net", "a": "B", "o": "y", "oid": None},
            ],
        )
    engine.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'accounts.db'}"
    create_table(url, "cqrs_accounts")
    return url


@pytest.fixture
def postgres_table() -> Iterator[str]:
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=1).close()
    except OSError:
        require(False, "PostgreSQL is not running on 127.0.0.1:5432")
    table = f"cqrs_accounts_{secrets.token_hex(4)}"
    create_table(POSTGRES, table)
    yield table
    from sqlalchemy import create_engine, text

    engine = create_engine(POSTGRES)
    with engine.begin() as connection:
        connection.execute(text(f"DROP TABLE {table}"))
    engine.dispose()


def test_sqlite_lookup_finds_an_account_case_insensitively(sqlite_url: str) -> None:
    lookup = configured_lookup(
        account_lookup=f"sql:{sqlite_url}", account_query=QUERY.format(table="cqrs_accounts")
    )
    account = lookup(person())
    assert account == Account("CQRS-7", "gp.user@nhs.net", {"organisation": "Test Surgery"})
    assert lookup(person("nobody@nhs.net")) is None


def test_postgresql_lookup_binds_email_and_oid(postgres_table: str) -> None:
    query = (
        f"SELECT account_id FROM {postgres_table} "  # noqa: S608 - our own table name
        "WHERE lower(email) = :email AND (oid IS NULL OR oid = :oid)"
    )
    lookup = configured_lookup(account_lookup=f"sql:{POSTGRES}", account_query=query)
    found = lookup(person())
    assert isinstance(found, Account)
    assert found.account_id == "CQRS-7"
    assert lookup(person(oid="someone-else")) is None  # the address was re-assigned


def test_two_rows_for_one_address_is_a_failure_not_a_choice(sqlite_url: str) -> None:
    lookup = configured_lookup(
        account_lookup=f"sql:{sqlite_url}", account_query=QUERY.format(table="cqrs_accounts")
    )
    with pytest.raises(LookupError):
        lookup(person("twice@nhs.net"))


def test_database_down_raises_so_the_user_sees_unavailable() -> None:
    from sqlalchemy.exc import OperationalError

    sock = bind_socket()
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now: connection refused
    lookup = configured_lookup(
        account_lookup=f"sql:postgresql+psycopg://postgres@127.0.0.1:{port}/test",
        account_query="SELECT 1 WHERE :email = ''",
    )
    with pytest.raises(OperationalError):  # the driver turns it into "temporarily unavailable"
        lookup(person())


@pytest.mark.parametrize(
    "changes,expected",
    [
        pytest.param({"account_lookup": "sql:sqlite://"}, "account_query: required", id="no-query"),
        pytest.param(
            {"account_lookup": "sql:sqlite://", "account_query": "SELECT 1"}, ":email", id="no-email-bind"
        ),
        pytest.param(
            {"account_lookup": "sql:nosuchdb://x", "account_query": "SELECT :email"},
            "database URL",
            id="bad-url",
        ),
        pytest.param(
            {"account_lookup": "https://accounts.example/lookup"}, "{email}", id="http-without-email"
        ),
    ],
)
def test_lookup_configuration_errors(changes: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        configured_lookup(**changes)
    assert any(expected in line for line in caught.value.problems), caught.value.problems


@pytest.fixture(scope="module")
def account_endpoint() -> Iterator[str]:
    async def lookup(request: Request) -> Response:
        email = request.query_params["email"]
        if email == "gp.user@nhs.net":
            return JSONResponse({"account_id": "CQRS-9", "email": email, "role": "GP", "level": 3})
        if email == "broken@nhs.net":
            return Response("oops", status_code=500)
        return Response(status_code=404)

    server = BackgroundASGIServer(Starlette(routes=[Route("/accounts", lookup)]), bind_socket()).start()
    yield server.url
    server.stop()


@pytest.mark.parametrize("prefix", ["", "http:"], ids=["bare-url", "http-colon-url"])
def test_http_lookup(account_endpoint: str, prefix: str) -> None:
    lookup: Callable[[Identity], Any] = configured_lookup(
        account_lookup=f"{prefix}{account_endpoint}/accounts?email={{email}}"
    )
    assert lookup(person()) == Account("CQRS-9", "gp.user@nhs.net", {"role": "GP", "level": "3"})
    assert lookup(person("unknown@nhs.net")) is None
    with pytest.raises(httpx.HTTPStatusError):  # a 500 is a failure, never "no account"
        lookup(person("broken@nhs.net"))
