"""The ``session_store`` URLs that name a Redis, read without connecting to anything.

Three topologies, each with a TLS spelling (``rediss…``):

* ``redis://[[user]:password@]host:port[/db]`` and ``unix:///path?db=N`` — one server
  (redis-py's own URL grammar);
* ``redis+sentinel://[[user]:password@]host:port[,host:port…]/service_name[/db]`` — the
  Sentinels that know the primary of ``service_name`` (Redis Sentinel); the password is the
  data nodes' (``redis_sentinel_password`` is the Sentinels' own);
* ``redis+cluster://[[user]:password@]host:port[,host:port…]`` — any nodes of a Redis
  Cluster, from which the client learns the rest (the cluster has one database, 0).

``RedisLocation.display`` never shows a password: it is what logs, ``/readyz`` and the
start-up line print.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import unquote, urlsplit

from .schema_base import display_url

Topology = Literal["standalone", "sentinel", "cluster"]
_SCHEMES: dict[str, tuple[Topology, bool]] = {
    "redis": ("standalone", False),
    "rediss": ("standalone", True),
    "unix": ("standalone", False),
    "redis+sentinel": ("sentinel", False),
    "rediss+sentinel": ("sentinel", True),
    "redis+cluster": ("cluster", False),
    "rediss+cluster": ("cluster", True),
}
REDIS_SCHEMES = frozenset(_SCHEMES)


class RedisUrlError(ValueError):
    """The URL is not one of the grammars above; the message says what is wrong."""


@dataclass(frozen=True)
class RedisLocation:
    url: str
    topology: Topology
    tls: bool
    nodes: tuple[tuple[str, int], ...] = ()
    service_name: str = ""
    db: int = 0
    username: str = ""
    password: str = field(default="", repr=False)

    @property
    def display(self) -> str:
        """The URL as it may be shown: a password replaced by ``***``."""
        if self.topology == "standalone":
            return display_url(self.url)
        scheme = self.url.split("://", 1)[0]
        auth = f"{self.username}:***@" if self.password else (f"{self.username}@" if self.username else "")
        hosts = ",".join(_host_port(host, port) for host, port in self.nodes)
        path = (
            f"/{self.service_name}" + (f"/{self.db}" if self.db else "")
            if self.topology == "sentinel"
            else ""
        )
        return f"{scheme}://{auth}{hosts}{path}"

    @property
    def summary(self) -> str:
        """What runs, in words: ``standalone``, ``sentinel (master mymaster, 3 sentinels)``,
        ``cluster (3 seed nodes)``, with ``, TLS`` when it is."""
        tls = ", TLS" if self.tls else ""
        if self.topology == "sentinel":
            return f"sentinel (master {self.service_name}, {len(self.nodes)} sentinels{tls})"
        if self.topology == "cluster":
            return f"cluster ({len(self.nodes)} seed nodes{tls})"
        return f"standalone{' (TLS)' if self.tls else ''}"


def parse_redis_url(url: str) -> RedisLocation:
    scheme, separator, rest = url.partition("://")
    if not separator or scheme.lower() not in _SCHEMES:
        raise RedisUrlError(
            "must be 'cookie', 'memory' or a redis://, rediss://, unix://, redis+sentinel:// or "
            "redis+cluster:// URL"
        )
    topology, tls = _SCHEMES[scheme.lower()]
    if topology == "standalone":
        parts = urlsplit(url)
        if not (parts.hostname or parts.path):
            raise RedisUrlError("names no host")
        return RedisLocation(url, topology, tls)
    netloc, _, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    username, _, password = userinfo.partition(":") if at else ("", "", "")
    nodes = tuple(_node(item) for item in hosts.split(",") if item.strip())
    if not nodes:
        raise RedisUrlError("names no host:port")
    service_name, db = _path(topology, path)
    return RedisLocation(url, topology, tls, nodes, service_name, db, unquote(username), unquote(password))


def _path(topology: Topology, path: str) -> tuple[str, int]:
    """The service name and database of a Sentinel URL; nothing after a Cluster's nodes."""
    segments = [segment for segment in path.split("?", 1)[0].split("/") if segment]
    if topology == "cluster":
        if segments and segments != ["0"]:
            raise RedisUrlError("a Redis Cluster has one database: no /db after the nodes")
        return "", 0
    if not segments:
        raise RedisUrlError("needs the service (master) name: redis+sentinel://host:port/mymaster")
    if len(segments) > 2:
        raise RedisUrlError("has more after /service_name/db")
    return unquote(segments[0]), _db(segments[1]) if len(segments) > 1 else 0


def _node(text: str) -> tuple[str, int]:
    host, colon, port = text.strip().rpartition(":")
    if not colon or not port.isdigit() or not 0 < int(port) < 65536:
        raise RedisUrlError(f"{text.strip()!r} is not host:port")
    host = host.strip("[]")
    if not host:
        raise RedisUrlError(f"{text.strip()!r} names no host")
    return host, int(port)


def _db(text: str) -> int:
    if not text.isdigit():
        raise RedisUrlError(f"database {text!r} is not a number")
    return int(text)


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
