"""The proxy's provider client: same requests as httpx made, TLS verified, proxies honoured."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cqrs_sso_middleware.core.oidc.client import MAX_PROVIDER_REPLY_BYTES
from cqrs_sso_middleware.core.protocol import HttpCall, HttpFailure, HttpReply
from cqrs_sso_middleware.proxy.provider_client import PooledProviderClient, reached_through_a_proxy

TOKEN = HttpCall(
    "POST",
    "",
    "token",
    form=(("grant_type", "authorization_code"), ("code", "c&d=e")),
    headers=(("Authorization", "Basic Y2xpZW50OnNlY3JldA=="),),
)
Answer = Callable[[bytes], bytes]


def reply(body: bytes, status: str = "200 OK") -> bytes:
    return b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        status.encode(),
        len(body),
        body,
    )


async def serve(answer: Answer, seen: list[bytes], tls: ssl.SSLContext | None = None) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.startswith(b"content-length")
                    ),
                    0,
                )
                request = head + await reader.readexactly(length)
                seen.append(request)
                writer.write(answer(request))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0, ssl=tls)


def call_through(
    client_for: Callable[[], PooledProviderClient], answer: Answer, tls: ssl.SSLContext | None = None
) -> tuple[list[HttpReply | HttpFailure], list[bytes]]:
    seen: list[bytes] = []

    async def main() -> list[HttpReply | HttpFailure]:
        server = await serve(answer, seen, tls)
        port = server.sockets[0].getsockname()[1]
        scheme = "https" if tls else "http"
        client = client_for()
        call = HttpCall(TOKEN.method, f"{scheme}://127.0.0.1:{port}/tenant/oauth2/v2.0/token", "token",
                        TOKEN.form, TOKEN.headers)  # fmt: skip
        async with server:
            results = [await client(call), await client(call)]
        client.close()
        return results

    return asyncio.run(main()), seen


async def never(call: HttpCall) -> HttpReply | HttpFailure:
    raise AssertionError("the httpx fallback was used")


def test_token_request_is_the_form_post_httpx_would_send_on_one_kept_alive_connection() -> None:
    results, seen = call_through(lambda: PooledProviderClient(2.0, never), lambda _: reply(b'{"ok": 1}'))
    assert results == [HttpReply(200, b'{"ok": 1}')] * 2
    first = seen[0]
    assert first.startswith(b"POST /tenant/oauth2/v2.0/token HTTP/1.1\r\n")
    assert b"\r\nhost: 127.0.0.1:" in first
    assert b"\r\nauthorization: Basic Y2xpZW50OnNlY3JldA==\r\n" in first
    assert b"\r\ncontent-type: application/x-www-form-urlencoded\r\n" in first
    assert first.endswith(b"\r\n\r\ngrant_type=authorization_code&code=c%26d%3De")


def test_an_oversized_or_broken_reply_is_a_failure_never_an_exception() -> None:
    huge = lambda _: reply(b"x" * (MAX_PROVIDER_REPLY_BYTES + 10))  # noqa: E731
    results, _ = call_through(lambda: PooledProviderClient(2.0, never), huge)
    assert all(isinstance(r, HttpFailure) and "larger than" in r.reason for r in results)
    results, _ = call_through(lambda: PooledProviderClient(2.0, never), lambda _: b"nonsense\r\n\r\n")
    assert all(isinstance(r, HttpFailure) and r.reason.startswith("token: ") for r in results)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def server_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


def test_tls_provider_is_verified_and_reached(certificate: tuple[Path, Path]) -> None:
    trusting = ssl.create_default_context(cafile=str(certificate[0]))
    results, seen = call_through(
        lambda: PooledProviderClient(2.0, never, ssl_context=trusting),
        lambda _: reply(b"{}"),
        server_tls(certificate),
    )
    assert results == [HttpReply(200, b"{}")] * 2 and len(seen) == 2


def test_tls_provider_with_an_untrusted_certificate_is_refused(certificate: tuple[Path, Path]) -> None:
    # No ssl_context given: the client takes httpx's own, which does not trust this
    # self-signed certificate — exactly as httpx would refuse it.
    results, seen = call_through(
        lambda: PooledProviderClient(2.0, never), lambda _: reply(b"{}"), server_tls(certificate)
    )
    assert all(isinstance(r, HttpFailure) for r in results)
    assert seen == []  # nothing, not even the authorization code, was sent


def test_a_provider_behind_an_outbound_proxy_goes_through_httpx(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "idp.internal")
    assert reached_through_a_proxy("https://login.microsoftonline.com/tenant/v2.0")
    assert not reached_through_a_proxy("https://idp.internal/tenant/v2.0")
    assert not reached_through_a_proxy("http://login.microsoftonline.com/")  # no HTTP_PROXY
    used: list[str] = []

    async def fallback(call: HttpCall) -> HttpReply | HttpFailure:
        used.append(call.url)
        return HttpReply(200, b"{}")

    client = PooledProviderClient(2.0, fallback)
    call = HttpCall(
        "GET", "https://login.microsoftonline.com/t/v2.0/.well-known/openid-configuration", "metadata"
    )
    assert asyncio.run(client(call)) == HttpReply(200, b"{}")
    assert used == [call.url]
