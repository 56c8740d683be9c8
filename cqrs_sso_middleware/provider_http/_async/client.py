"""One face of the provider's HTTP client over httpx: redirects not followed, each call
bounded by the client's time-out, and a reply larger than ``MAX_PROVIDER_REPLY_BYTES`` a
failure, read no further. TLS is verified as httpx does by default. The httpx client is
made on first use, so a process pays only for the face it uses.
"""

from __future__ import annotations

from typing import Any

import httpx

from ...core.oidc.client import MAX_PROVIDER_REPLY_BYTES
from ...core.protocol import HttpCall, HttpFailure, HttpReply, HttpResult


class AsyncProviderHttp:
    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options  # httpx client options: time-out, redirects, User-Agent
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(**self.options)
        return self._client

    async def acall(self, call: HttpCall) -> HttpResult:
        try:
            request = self.client.build_request(
                call.method, call.url, data=dict(call.form or ()), headers=call.headers
            )
            reply = await self.client.send(request, stream=True)
            try:
                body = b""
                async for chunk in reply.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_PROVIDER_REPLY_BYTES:
                        return HttpFailure(
                            f"{call.purpose}: reply larger than {MAX_PROVIDER_REPLY_BYTES} bytes"
                        )
                return HttpReply(reply.status_code, body)
            finally:
                await reply.aclose()
        except httpx.HTTPError as error:
            return HttpFailure(f"{call.purpose}: {type(error).__name__}")

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
