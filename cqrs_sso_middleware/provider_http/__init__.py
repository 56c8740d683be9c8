"""Calls to the identity provider (metadata, signing keys, token) over httpx.

Two faces of one rule set (``_async/client.py``, and its generated sync twin):
``call`` for WSGI and the command line (``httpx.Client``), ``acall`` for ASGI
(``httpx.AsyncClient``), each with the same options.
"""

from __future__ import annotations

from .. import __version__
from ..core.protocol import HttpCall, HttpResult
from ._async.client import AsyncProviderHttp
from ._sync.client import SyncProviderHttp

USER_AGENT = f"cqrs-sso-middleware/{__version__}"


class ProviderHttp:
    def __init__(self, timeout_seconds: float) -> None:
        self.timeout_seconds = timeout_seconds
        options = {
            "timeout": timeout_seconds,
            "follow_redirects": False,
            "headers": {"User-Agent": USER_AGENT},
        }
        self.sync = SyncProviderHttp(options)
        self.async_ = AsyncProviderHttp(options)

    def call(self, call: HttpCall) -> HttpResult:
        return self.sync.call(call)

    async def acall(self, call: HttpCall) -> HttpResult:
        return await self.async_.acall(call)

    def close(self) -> None:
        self.sync.close()

    async def aclose(self) -> None:
        await self.async_.aclose()
        self.close()
