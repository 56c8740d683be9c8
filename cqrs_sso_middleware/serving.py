"""Running apps on loopback sockets in background threads: the demo and the tests use this.

uvicorn serves ASGI apps; werkzeug's threaded server serves WSGI apps. The socket is bound
before the thread starts, so the port is known (and free) before anything is built around
it — the provider needs its own URL to name its issuer.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import TYPE_CHECKING, Any

import uvicorn
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication


def bind_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening socket; ``OSError`` (the socket closed) when the address cannot be had."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


class BackgroundASGIServer:
    """uvicorn serving ``app`` on ``sock`` in a daemon thread."""

    def __init__(self, app: Any, sock: socket.socket, log_level: str = "warning") -> None:
        self.sock = sock
        host, port = sock.getsockname()[:2]
        self.url = f"http://{host}:{port}"
        config = uvicorn.Config(app, log_level=log_level, lifespan="auto", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)

    def start(self, timeout: float = 10.0) -> BackgroundASGIServer:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"server at {self.url} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


class PathOnlyRequestHandler(WSGIRequestHandler):
    """werkzeug's request log without query strings: the callback's carries a code."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        path = self.path.split("?", 1)[0]
        self.log("info", '"%s %s %s" %s %s', self.command, path, self.request_version, code, size)


class BackgroundWSGIServer:
    """werkzeug's threaded WSGI server serving ``app`` on ``sock`` in a daemon thread."""

    def __init__(self, app: WSGIApplication, sock: socket.socket) -> None:
        host, port = sock.getsockname()[:2]
        self.sock = sock
        self.server: BaseWSGIServer = make_server(
            host, port, app, threaded=True, request_handler=PathOnlyRequestHandler, fd=sock.fileno()
        )
        self.url = f"http://{host}:{port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> BackgroundWSGIServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
        self.sock.close()
