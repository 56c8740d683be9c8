"""The reverse proxy and forward-auth service for services that cannot be changed."""

from .app import create_proxy_app

__all__ = ["create_proxy_app"]
