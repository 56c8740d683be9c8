"""NHSmail single sign-on for CQRS: WSGI and ASGI middleware sharing one protocol core."""

__version__ = "0.2.0"  # first: modules below read it

from .core.errors import ConfigError
from .core.identity import Account, Identity, User
from .core.security.header_values import decode_header_value
from .drivers.asgi import ASGISSOMiddleware
from .drivers.wsgi import SSOMiddleware
from .runtime import Runtime
from .settings import Settings

__all__ = [
    "ASGISSOMiddleware",
    "Account",
    "ConfigError",
    "Identity",
    "Runtime",
    "SSOMiddleware",
    "Settings",
    "User",
    "decode_header_value",
]
