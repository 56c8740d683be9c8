"""The built-in NHSmail-like OpenID provider — for demos and tests only, never production."""

from .app import (
    DEMO_NOTICE,
    WRONG_CREDENTIALS,
    DemoClient,
    DemoUser,
    NHSmailLikeProvider,
    ProviderFaults,
)

__all__ = [
    "DEMO_NOTICE",
    "WRONG_CREDENTIALS",
    "DemoClient",
    "DemoUser",
    "NHSmailLikeProvider",
    "ProviderFaults",
]
