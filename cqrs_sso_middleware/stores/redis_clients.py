"""redis-py clients for each topology ``session_store`` can name: one server, Sentinel, or
Cluster; plain or TLS; sync (WSGI, the command line) and asyncio (ASGI, the proxy).

What each topology does when a node dies:

* **one server**: nothing can; the store fails closed (503) until it is back, and what it
  held is gone unless it persists (``appendonly yes``);
* **Sentinel**: every new connection asks the Sentinels for the current primary
  (redis-py's ``SentinelConnectionPool``); a command that meets a dead or demoted primary
  (a refused connection, ``READONLY``) is retried once on a fresh connection, which finds the
  new primary once the Sentinels have promoted a replica. Until then: 503, never a 500;
* **Cluster**: redis-py's ``RedisCluster`` follows ``MOVED`` and refreshes the slot map
  when a node fails; until a replica is promoted for a dead primary's slots, 503.

``ReplicaWatch`` answers "does this primary have a replica?" (``INFO replication``, asked
at most every few seconds): revocations wait for one (``WAIT``) only then.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, cast

from ..settings.redis_url import RedisLocation
from ..settings.sessions import SessionSettings

REPLICA_CHECK_SECONDS = 5.0


class RedisClients:
    """The clients of one ``session_store``, built on first use (a process pays only for
    the face — sync or async — it uses), and how to describe what they reach."""

    def __init__(self, location: RedisLocation, settings: SessionSettings) -> None:
        self.location = location
        self.cluster = location.topology == "cluster"
        timeout = settings.session_store_timeout_seconds
        self.options: dict[str, Any] = {
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
        }
        if not self.cluster:
            self.options["health_check_interval"] = 30
        password = settings.redis_password or location.password
        if password:
            self.options["password"] = password
        if location.username:
            self.options["username"] = location.username
        self.tls: dict[str, Any] = {}
        if location.tls:
            self.tls = {
                "ssl_cert_reqs": "required",
                "ssl_check_hostname": settings.redis_tls_check_hostname,
                **({"ssl_ca_certs": settings.redis_tls_ca_file} if settings.redis_tls_ca_file else {}),
                **({"ssl_certfile": settings.redis_tls_cert_file} if settings.redis_tls_cert_file else {}),
                **({"ssl_keyfile": settings.redis_tls_key_file} if settings.redis_tls_key_file else {}),
            }
        self.sentinel_password = settings.redis_sentinel_password
        self._sync: Any = None
        self._sentinel: Any = None
        self._async: Any = None
        self._async_sentinel: Any = None
        self._async_loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    # -- building -----------------------------------------------------------------------------

    def _sentinel_kwargs(self) -> dict[str, Any]:
        sentinel = {"socket_timeout": self.options["socket_timeout"]}
        sentinel["socket_connect_timeout"] = self.options["socket_connect_timeout"]
        if self.sentinel_password:
            sentinel["password"] = self.sentinel_password
        if self.tls:
            sentinel.update(ssl=True, **self.tls)
        return sentinel

    def _data_kwargs(self, retry: Any) -> dict[str, Any]:
        return {**self.options, "retry": retry, **({"ssl": True, **self.tls} if self.tls else {})}

    def sync(self) -> Any:
        if self._sync is None:
            with self._lock:
                if self._sync is None:
                    self._sync = self._build_sync()
        return self._sync

    def _build_sync(self) -> Any:
        import redis
        from redis.backoff import NoBackoff
        from redis.cluster import ClusterNode, RedisCluster
        from redis.retry import Retry
        from redis.sentinel import Sentinel

        # One quick retry: a pooled connection that died with a Redis restart (or a primary
        # that changed) is replaced at once; a Redis that is down fails within the time-out.
        retry = Retry(NoBackoff(), 1)
        location = self.location
        if location.topology == "standalone":
            return redis.Redis.from_url(location.url, **self.options, retry=retry, **self.tls)
        if location.topology == "sentinel":
            # Constructors are called through Any: redis-py 5 leaves them unannotated (and
            # RedisCluster abstract to mypy) where 8 annotates them, so no `type: ignore`
            # could hold on both versions.
            sentinel = cast(Any, Sentinel)(list(location.nodes), sentinel_kwargs=self._sentinel_kwargs())
            self._sentinel = sentinel
            return sentinel.master_for(location.service_name, db=location.db, **self._data_kwargs(retry))
        nodes = [cast(Any, ClusterNode)(host, port) for host, port in location.nodes]
        return cast(Any, RedisCluster)(startup_nodes=nodes, **self._data_kwargs(retry))

    def async_(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._async is None or self._async_loop is not loop:
            self._async = self._build_async()
            self._async_loop = loop
        return self._async

    def _build_async(self) -> Any:
        import redis.asyncio
        from redis.asyncio.cluster import ClusterNode, RedisCluster
        from redis.asyncio.retry import Retry
        from redis.asyncio.sentinel import Sentinel
        from redis.backoff import NoBackoff

        # The asyncio client's own Retry: redis-py 8 converts a synchronous one with a warning.
        retry = Retry(NoBackoff(), 1)
        location = self.location
        if location.topology == "standalone":
            return redis.asyncio.Redis.from_url(location.url, **self.options, retry=retry, **self.tls)
        if location.topology == "sentinel":
            sentinel = cast(Any, Sentinel)(list(location.nodes), sentinel_kwargs=self._sentinel_kwargs())
            self._async_sentinel = sentinel
            return sentinel.master_for(location.service_name, db=location.db, **self._data_kwargs(retry))
        nodes = [ClusterNode(host, port) for host, port in location.nodes]
        return cast(Any, RedisCluster)(startup_nodes=nodes, **self._data_kwargs(retry))

    # -- describing ---------------------------------------------------------------------------

    def describe(self) -> str:
        """What the store reaches now, for ``/readyz``: the current primary of a Sentinel
        set, the nodes of a cluster. No password."""
        location = self.location
        if location.topology == "sentinel" and self._sentinel is not None:
            host, port = self._sentinel.discover_master(location.service_name)
            return f"sentinel, master {location.service_name} at {host}:{port}"
        if self.cluster:
            return f"cluster, {len(self.sync().get_primaries())} primaries"
        return location.summary

    async def adescribe(self) -> str:
        location = self.location
        if location.topology == "sentinel" and self._async_sentinel is not None:
            host, port = await self._async_sentinel.discover_master(location.service_name)
            return f"sentinel, master {location.service_name} at {host}:{port}"
        if self.cluster:
            return f"cluster, {len(self.async_().get_primaries())} primaries"
        return location.summary

    # -- closing ------------------------------------------------------------------------------

    def close(self) -> None:
        if self._sync is not None:
            self._sync.close()
            self._sync = None
        if self._sentinel is not None:  # its own connections to each Sentinel
            for sentinel in self._sentinel.sentinels:
                sentinel.close()
            self._sentinel = None

    async def aclose(self) -> None:
        if self._async is not None:
            await self._async.aclose()
            self._async = None
        if self._async_sentinel is not None:
            for sentinel in self._async_sentinel.sentinels:
                await sentinel.aclose()
            self._async_sentinel = None


class ReplicaWatch:
    """Whether a primary has at least one connected replica, from ``INFO replication``,
    asked at most every ``REPLICA_CHECK_SECONDS`` per node. Reading it costs a round trip,
    so it is never on a request's path except a revocation's."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[float, bool]] = {}

    def _fresh(self, node: str) -> bool | None:
        seen = self._seen.get(node)
        if seen is not None and time.monotonic() - seen[0] < REPLICA_CHECK_SECONDS:
            return seen[1]
        return None

    def _remember(self, node: str, info: Any) -> bool:
        replicas = isinstance(info, dict) and int(info.get("connected_slaves", 0) or 0) > 0
        self._seen[node] = (time.monotonic(), replicas)
        return replicas

    def has_replica(self, node: str, client: Any) -> bool:
        known = self._fresh(node)
        return known if known is not None else self._remember(node, client.info("replication"))

    async def ahas_replica(self, node: str, client: Any) -> bool:
        known = self._fresh(node)
        return known if known is not None else self._remember(node, await client.info("replication"))
