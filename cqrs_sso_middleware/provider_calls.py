"""Calls to the identity provider (metadata, signing keys, token) over httpx.

Two faces of one rule set: ``call`` for WSGI and the command line (``httpx.Client``),
``acall`` for ASGI (``httpx.AsyncClient``). Each client is made on first use, so a
process pays only for the face it uses. Redirects are not followed, each call is bounded
by ``http_timeout_seconds``, and a reply larger than ``MAX_PROVIDER_REPLY_BYTES`` is a
failure, read no further. TLS is verified as httpx does by default.
"""

from __future__ import annotations

from typing import Any

import httpx

from . import __version__
from .core.oidc.client import MAX_PROVIDER_REPLY_BYTES
from .core.protocol import HttpCall, HttpFailure, HttpReply, HttpResult

USER_AGENT = f"cqrs-sso-middleware/{__version__}"


class ProviderHttp:
    def __init__(self, timeout_seconds: float) -> None:
        self.timeout_seconds = timeout_seconds
        self._sync: httpx.Client | None = None
        self._async: httpx.AsyncClient | None = None

    def _options(self) -> dict[str, Any]:
        return {
            "timeout": self.timeout_seconds,
            "follow_redirects": False,
            "headers": {"User-Agent": USER_AGENT},
        }

    @property
    def sync_client(self) -> httpx.Client:
        if self._sync is None:
            self._sync = httpx.Client(**self._options())
        return self._sync

    @property
    def async_client(self) -> httpx.AsyncClient:
        if self._async is None:
            self._async = httpx.AsyncClient(**self._options())
        return self._async

    def call(self, call: HttpCall) -> HttpResult:
        try:
            request = self.sync_client.build_request(
                call.method, call.url, data=dict(call.form or ()), headers=call.headers
            )
            reply = self.sync_client.send(request, stream=True)
            try:
                body = b""
                for chunk in reply.iter_bytes():
                    body += chunk
                    if len(body) > MAX_PROVIDER_REPLY_BYTES:
                        return _too_large(call)
                return HttpReply(reply.status_code, body)
            finally:
                reply.close()
        except httpx.HTTPError as error:
            return HttpFailure(f"{call.purpose}: {type(error).__name__}")

    async def acall(self, call: HttpCall) -> HttpResult:
        try:
            request = self.async_client.build_request(
                call.method, call.url, data=dict(call.form or ()), headers=call.headers
            )
            reply = await self.async_client.send(request, stream=True)
            try:
                body = b""
                async for chunk in reply.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_PROVIDER_REPLY_BYTES:
                        return _too_large(call)
                return HttpReply(reply.status_code, body)
            finally:
                await reply.aclose()
        except httpx.HTTPError as error:
            return HttpFailure(f"{call.purpose}: {type(error).__name__}")

    def close(self) -> None:
        if self._sync is not None:
            self._sync.close()
            self._sync = None

    async def aclose(self) -> None:
        if self._async is not None:
            await self._async.aclose()
            self._async = None
        self.close()


def _too_large(call: HttpCall) -> HttpFailure:
    return HttpFailure(f"{call.purpose}: reply larger than {MAX_PROVIDER_REPLY_BYTES} bytes")
