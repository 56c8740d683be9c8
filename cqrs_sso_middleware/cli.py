"""``cqrs-sso``: the command line. ``demo``, ``proxy``, ``provider``, ``check-config``,
``sessions list|revoke``, ``new-secret`` and ``certificate``.

Configuration precedence is one rule: flags > environment (``CQRS_SSO_*``) > ``--config``
TOML file > defaults.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass


def _demo(args: argparse.Namespace) -> int:
    from .demo import PortInUse, run_demo

    try:
        run_demo(args.port, args.provider_port, args.variant)
    except PortInUse as busy:
        print(f"cqrs-sso demo: {busy}", file=sys.stderr)
        return 1
    return 0


def _provider(args: argparse.Namespace) -> int:
    from .demo import PortInUse, run_provider

    try:
        run_provider(args.listen, args.app_url)
    except (PortInUse, ValueError) as problem:
        print(f"cqrs-sso provider: {problem}", file=sys.stderr)
        return 1
    return 0


# What `cqrs-sso proxy` imports that only the `proxy` extra installs.
PROXY_EXTRA_MODULES = ("prometheus_client", "websockets", "httptools")


def _proxy(args: argparse.Namespace) -> int:
    import importlib.util

    missing = [name for name in PROXY_EXTRA_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        print(
            f"cqrs-sso proxy: the 'proxy' extra is not installed (missing: {', '.join(missing)}). "
            "Install it with: pip install 'cqrs-sso-middleware[proxy]'",
            file=sys.stderr,
        )
        return 1
    from .proxy.server import serve

    return serve(args.config, args.upstream, args.listen, args.workers)


def _check_config(args: argparse.Namespace) -> int:
    from .config_check import check_config

    return check_config(args.config)


def _sessions(args: argparse.Namespace) -> int:
    from .admin import run_sessions_command
    from .runtime import load_or_explain

    runtime = load_or_explain(args.config)
    if runtime is None:
        return 1
    try:
        return run_sessions_command(runtime, args.action, args.email, getattr(args, "all", False))
    finally:
        runtime.close()


def _new_secret(args: argparse.Namespace) -> int:
    from .credentials import new_secret

    print(new_secret())
    return 0


def _certificate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .credentials import make_certificate

    try:
        credential = make_certificate(Path(args.out), args.common_name, args.days)
    except (FileExistsError, OSError) as error:
        print(f"certificate: {error}", file=sys.stderr)
        return 1
    print(f"private key (keep it here, mode 0600): {credential.key_file}")
    print(f"certificate (for the NHSmail helpdesk, the app registration): {credential.certificate_file}")
    print(f"thumbprint (SHA-1, as Entra shows it): {credential.thumbprint_sha1}")
    print("settings:")
    print("  CQRS_SSO_TOKEN_AUTH_METHOD=private_key_jwt")
    print(f"  CQRS_SSO_PRIVATE_KEY_FILE={credential.key_file}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="cqrs-sso", description="NHSmail single sign-on for CQRS")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="run the demo CQRS app and the NHSmail-like provider")
    demo.add_argument("--port", type=int, default=8000, help="demo app port (default 8000)")
    demo.add_argument("--provider-port", type=int, default=8001, help="provider port (default 8001)")
    demo.add_argument(
        "--variant", choices=["asgi", "wsgi"], default="asgi", help="which driver wraps the app"
    )
    demo.set_defaults(run=_demo)

    proxy = commands.add_parser("proxy", help="sign-in reverse proxy (and forward-auth) for a legacy service")
    proxy.add_argument("--config", help="TOML configuration file")
    proxy.add_argument("--upstream", help="where authenticated requests go, e.g. http://127.0.0.1:9000")
    proxy.add_argument("--listen", help="host:port to listen on (default 127.0.0.1:8080)")
    proxy.add_argument(
        "--workers", type=int, default=None, help="worker processes (default: the workers setting, 1)"
    )
    proxy.set_defaults(run=_proxy)

    provider = commands.add_parser("provider", help="run only the NHSmail-like provider (demo/tests)")
    provider.add_argument("--listen", default="127.0.0.1:8001", help="host:port (default 127.0.0.1:8001)")
    provider.add_argument(
        "--app-url",
        default=None,
        help="the app whose callback to allow (default: the same host, the port below --listen's)",
    )
    provider.set_defaults(run=_provider)

    sessions = commands.add_parser("sessions", help="list or revoke sessions in the Redis session store")
    session_actions = sessions.add_subparsers(dest="action", required=True)
    listing = session_actions.add_parser("list", help="list sessions, optionally of one email address")
    listing.add_argument("--email", help="only this person's sessions")
    listing.add_argument("--config", help="TOML configuration file")
    revoke = session_actions.add_parser("revoke", help="end sessions at once, on every instance")
    who = revoke.add_mutually_exclusive_group(required=True)
    who.add_argument("--email", help="end every session of this email address")
    who.add_argument("--all", action="store_true", help="end every session")
    revoke.add_argument("--config", help="TOML configuration file")
    sessions.set_defaults(run=_sessions)

    secret = commands.add_parser("new-secret", help="print a new random key for secret_keys")
    secret.set_defaults(run=_new_secret)

    certificate = commands.add_parser(
        "certificate", help="make an RSA key and self-signed certificate for Entra certificate credentials"
    )
    certificate.add_argument("--out", required=True, help="directory for the key and certificate files")
    certificate.add_argument("--common-name", default="cqrs-sso", help="certificate subject CN")
    certificate.add_argument("--days", type=int, default=730, help="validity in days (default 730)")
    certificate.set_defaults(run=_certificate)

    check = commands.add_parser("check-config", help="validate configuration and fetch provider metadata")
    check.add_argument("--config", help="TOML configuration file")
    check.set_defaults(run=_check_config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # httpx logs every request at INFO ("HTTP Request: GET …"): noise in a command's output,
    # and a URL can carry a query string.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
