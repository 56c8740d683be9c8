"""The built-in NHSmail-like OpenID provider — for demos and tests only, never production."""

from .app import NHSmailLikeProvider
from .model import DemoClient, DemoUser, ProviderFaults
from .pages import DEMO_NOTICE, WRONG_CREDENTIALS

__all__ = [
    "DEMO_NOTICE",
    "WRONG_CREDENTIALS",
    "DemoClient",
    "DemoUser",
    "NHSmailLikeProvider",
    "ProviderFaults",
]
