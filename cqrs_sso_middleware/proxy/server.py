"""Serving the proxy with uvicorn (uvloop and httptools when installed).

Flags are written to the ``CQRS_SSO_*`` environment before uvicorn starts, so that with
``--workers N`` every worker process builds the same settings: flags > environment >
``--config`` file > defaults, one rule everywhere. uvicorn's own ``X-Forwarded-*`` handling
is switched off: the proxy decides whom to trust (``trusted_proxies``).
"""

from __future__ import annotations

import errno
import gc
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
from types import FrameType

from starlette.types import ASGIApp

from ..audit import FallbackHandler
from ..metrics import MULTIPROCESS_VARIABLE, multiprocess_directory
from ..runtime import load_or_explain
from ..settings import Settings
from .app import create_proxy_app, describe

CONFIG_FILE_VARIABLE = "CQRS_SSO_CONFIG_FILE"


def configure_logging() -> None:
    """JSON lines for the access and audit logs; plain lines for the rest. httpx's own
    per-request lines are quieted: they would repeat upstream URLs with query strings."""
    json_lines = logging.StreamHandler(sys.stderr)
    json_lines.setFormatter(logging.Formatter("%(message)s"))
    json_lines.cqrs_sso_json_lines = True  # type: ignore[attr-defined]  # access_log.line_sink batches to it
    for name in ("cqrs_sso.access", "cqrs_sso.audit"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [json_lines]
        logger.setLevel(logging.INFO)
        logger.propagate = False
    plain = logging.getLogger("cqrs_sso")
    plain.handlers[:] = [h for h in plain.handlers if not isinstance(h, FallbackHandler)]
    if not plain.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        plain.addHandler(handler)
        plain.setLevel(logging.INFO)
        plain.propagate = False
    logging.getLogger("httpx").setLevel(logging.WARNING)


def app_from_environment() -> ASGIApp:
    """uvicorn's factory: each worker builds its app (and its logging) from the environment."""
    configure_logging()
    settings = Settings.load(os.environ.get(CONFIG_FILE_VARIABLE), os.environ)
    app = create_proxy_app(settings)
    # What start-up built (modules, templates, settings) lives as long as the worker: moved
    # out of the collector's sight, so that collections during requests scan only what
    # requests allocate (shorter pauses, fewer slow outliers).
    gc.collect()
    gc.freeze()
    return app


def serve(config_file: str | None, upstream: str | None, listen: str | None, workers: int | None) -> int:
    if config_file:
        os.environ[CONFIG_FILE_VARIABLE] = os.path.abspath(config_file)
    if upstream:
        os.environ["CQRS_SSO_UPSTREAM"] = upstream
    if listen:
        os.environ["CQRS_SSO_LISTEN"] = listen
    for warning in Settings.unknown_variables():
        print(f"config warning: {warning}", file=sys.stderr)
    # Everything a worker will build, checked once here: all problems in one pass.
    runtime = load_or_explain(os.environ.get(CONFIG_FILE_VARIABLE), os.environ)
    if runtime is None:
        return 1
    runtime.close()
    settings = runtime.settings
    configure_logging()
    bound = _bind_all(settings)
    if bound is None:
        return 1
    described = describe(settings)
    # One line for the operator, never a secret, and only once the port is ours: what
    # runs, and where to open it.
    print(
        f"cqrs-sso proxy: listening on {described['listen']}, upstream {described['upstream']}, "
        f"issuer {described['issuer']}, session store {described['session_store']}, "
        f"account lookup {described['account_lookup']}; open {described['open']}"
        + (f"; metrics on {settings.proxy.metrics_listen}" if settings.proxy.metrics_listen else ""),
        flush=True,
    )
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from .http_protocol import CoalescingHttpToolsProtocol
    from .websocket_protocol import GracefulWebSocketProtocol

    config = uvicorn.Config(
        "cqrs_sso_middleware.proxy.server:app_from_environment",
        factory=True,
        workers=workers or settings.proxy.workers,
        proxy_headers=False,
        http=CoalescingHttpToolsProtocol,  # head and small body in one write (http_protocol.py)
        ws=GracefulWebSocketProtocol,  # a stop gives open WebSockets the grace too
        server_header=False,  # the upstream's Server header passes; no second one
        access_log=False,  # the proxy writes its own JSON access log, without query strings
        timeout_graceful_shutdown=settings.proxy.shutdown_grace_seconds,
        timeout_keep_alive=settings.proxy.keep_alive_seconds,
        log_level="warning",
    )
    # What uvicorn.run does, on the socket bound above (uvicorn's own fd= option would
    # take it for a Unix socket and misread every client address).
    own_directory = None
    exit_cleanly_on_sigterm()
    try:
        if config.workers > 1:
            own_directory = shared_metrics_directory()
            Multiprocess(config, sockets=bound).run()
        else:
            config.load_app()
            uvicorn.Server(config).run(sockets=bound)
    except KeyboardInterrupt:
        pass
    finally:
        for sock in bound:
            sock.close()
        if own_directory is not None:
            shutil.rmtree(own_directory, ignore_errors=True)
    return 0


def exit_cleanly_on_sigterm() -> None:
    """SIGTERM before uvicorn listens, or again after its graceful stop (uvicorn raises the
    signal once more when it has finished, for the handler that was there before it): exit
    with status 0, as an orchestrator expects of a stop it asked for. While uvicorn serves,
    its own handler is in place and stops gracefully (``shutdown_grace_seconds``)."""

    def exit_now(sig: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, exit_now)


def shared_metrics_directory() -> str | None:
    """Before the workers start: prometheus-client's multi-process mode, so that one scrape
    of ``/metrics`` adds up every worker (``metrics.py``). Its directory is the deployer's
    ``PROMETHEUS_MULTIPROC_DIR`` (emptied: values of an earlier run would be added in) or a
    private one of our own, whose path is returned so that it is removed at exit."""
    directory = multiprocess_directory()
    if directory is not None:
        os.makedirs(directory, exist_ok=True)
        for name in os.listdir(directory):
            if name.endswith(".db"):
                os.unlink(os.path.join(directory, name))
        return None
    directory = tempfile.mkdtemp(prefix="cqrs-sso-metrics-")
    os.environ[MULTIPROCESS_VARIABLE] = directory  # inherited by the workers, read at import
    return directory


def _bind_all(settings: Settings) -> list[socket.socket] | None:
    """The main listener and, with ``metrics_listen``, the metrics' own; ``None`` (and
    nothing left open) when either cannot be had."""
    proxy = settings.proxy
    wanted = [
        (name, address)
        for name, address in (("listen", proxy.listen), ("metrics_listen", proxy.metrics_listen))
        if address
    ]
    bound: list[socket.socket] = []
    for name, address in wanted:
        sock = _bind(address, name)
        if sock is None:
            for opened in bound:
                opened.close()
            return None
        bound.append(sock)
    return bound


def _bind(listen: str, setting: str = "listen") -> socket.socket | None:
    """The listening socket, or ``None`` after saying why (a port in use, an address this
    machine does not have) and which setting to change."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, int(port)))
        sock.listen(2048)
    except OSError as error:
        sock.close()
        reason = "the port is in use" if error.errno == errno.EADDRINUSE else error.strerror
        how = "--listen (or the listen setting)" if setting == "listen" else f"the {setting} setting"
        print(
            f"cqrs-sso proxy: cannot listen on {listen}: {reason}; choose another with {how}", file=sys.stderr
        )
        return None
    return sock
