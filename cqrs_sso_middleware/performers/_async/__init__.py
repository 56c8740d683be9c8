"""The async face, written once; ``_sync`` beside it holds the generated sync twin.

``scripts/generate_sync.py`` (``make unasync``) writes each ``_sync`` module from its
``_async`` one with unasync's token rules (``await`` and ``async`` removed, ``acall`` →
``call``, ``AsyncClient`` → ``Client``…), and ``tests/test_generated_sync_code.py`` fails
when a twin differs from what it would write. Edit here, then run ``make unasync``.
"""
