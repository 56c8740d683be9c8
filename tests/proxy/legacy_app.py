"""A 'legacy' WSGI app for the proxy tests: it only reports what it received."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

CHUNK = b"x" * 65536


def legacy_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "")
    if path == "/download":
        size = int(environ.get("QUERY_STRING", "size=0").split("=")[1])
        start_response(
            "200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(size))]
        )
        return _chunks(size)
    if path == "/upload":
        digest, total = hashlib.sha256(), 0
        stream = environ["wsgi.input"]
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
            total += len(chunk)
        return _json(start_response, {"received": total, "sha256": digest.hexdigest()})
    if path == "/redirect":
        host = environ["HTTP_HOST"]
        start_response("302 Found", [("Location", f"http://{host}/landing?x=1"), ("Content-Length", "0")])
        return [b""]
    if path == "/slow":
        query = dict(parse_qsl(environ.get("QUERY_STRING", "")))
        if "mark" in query:  # tells a test the request has arrived: now it is in flight
            Path(query["mark"]).touch()
        time.sleep(float(query.get("s", "2")))
        return _json(start_response, {"slept": True})
    if path == "/broken":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "1000000")])
        return _broken()
    headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
    return _json(
        start_response,
        {
            "path": path,
            "query": environ.get("QUERY_STRING", ""),
            "headers": headers,
            "method": environ["REQUEST_METHOD"],
        },
    )


def _json(start_response: Callable[..., Any], body: dict[str, Any]) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(
        "200 OK",
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(data))),
            ("Connection", "X-Legacy-Hop"),
            ("X-Legacy-Hop", "must-not-pass"),
            ("Keep-Alive", "timeout=5"),
        ],
    )
    return [data]


def _chunks(size: int) -> Iterable[bytes]:
    sent = 0
    while sent < size:
        piece = CHUNK[: min(len(CHUNK), size - sent)]
        sent += len(piece)
        yield piece


def _broken() -> Iterable[bytes]:
    yield b"partial"
    raise ConnectionError("legacy app died mid-body")
