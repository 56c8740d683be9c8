"""NHSmail single sign-on for CQRS: WSGI and ASGI middleware sharing one protocol core."""

from .core.errors import ConfigError
from .core.identity import Account, Identity, User
from .drivers.asgi import ASGISSOMiddleware
from .drivers.wsgi import SSOMiddleware
from .settings import Settings

__all__ = [
    "ASGISSOMiddleware",
    "Account",
    "ConfigError",
    "Identity",
    "SSOMiddleware",
    "Settings",
    "User",
]
__version__ = "0.2.0"
