"""Generated from ``_async`` by ``make unasync`` (``scripts/generate_sync.py``): do not edit."""
