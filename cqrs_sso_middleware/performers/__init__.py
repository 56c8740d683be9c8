"""The runtime's resources as the interpreter's performers (``core/interpreter.py``):
``SyncEffects`` for the WSGI face and the command line, ``AsyncEffects`` for the ASGI face
and the proxy. One source: ``_async/effects.py``; the sync one is generated from it.
"""

from ._async.effects import AsyncEffects
from ._sync.effects import SyncEffects

__all__ = ["AsyncEffects", "SyncEffects"]
