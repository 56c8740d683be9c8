"""Thin I/O drivers around the core: ``wsgi`` (werkzeug, httpx.Client) and ``asgi``."""
