"""Real Redis topologies on loopback for the tests and benchmarks: one server with TLS, a
Sentinel set (a primary, replicas, three Sentinels) and a Cluster (primaries with replicas).

Every process is a Debian ``redis-server`` started on free ports in a folder of its own and
stopped by whoever started it. TLS material (a CA, a server certificate naming 127.0.0.1 and
localhost, a client certificate) is made here with ``cryptography``.
"""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .helpers import free_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"
SERVICE = "cqrs"


def redis_server_available() -> bool:
    return Path(REDIS_SERVER).exists() and Path(REDIS_CLI).exists()


# -- TLS material ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_name_cert: Path  # a server certificate for another host name (hostname checks)
    other_name_key: Path


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _write_key(path: Path, key: rsa.RSAPrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )


def make_tls_files(folder: Path) -> TlsFiles:
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cqrs-sso test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )

    def issue(
        name: str, sans: list[x509.GeneralName], *usages: x509.ObjectIdentifier
    ) -> tuple[bytes, rsa.RSAPrivateKey]:
        key = _key()
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        return certificate.public_bytes(serialization.Encoding.PEM), key

    server, server_key = issue(
        "127.0.0.1",
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
        ExtendedKeyUsageOID.SERVER_AUTH,
        ExtendedKeyUsageOID.CLIENT_AUTH,  # a replica, a Sentinel or a cluster node is a client too
    )
    client, client_key = issue("cqrs-sso client", [x509.DNSName("client")], ExtendedKeyUsageOID.CLIENT_AUTH)
    other, other_key = issue(
        "redis.elsewhere",
        [x509.DNSName("redis.elsewhere")],
        ExtendedKeyUsageOID.SERVER_AUTH,
        ExtendedKeyUsageOID.CLIENT_AUTH,
    )
    files = TlsFiles(
        folder / "ca.crt",
        folder / "server.crt",
        folder / "server.key",
        folder / "client.crt",
        folder / "client.key",
        folder / "other.crt",
        folder / "other.key",
    )
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.server_cert.write_bytes(server)
    _write_key(files.server_key, server_key)
    files.client_cert.write_bytes(client)
    _write_key(files.client_key, client_key)
    files.other_name_cert.write_bytes(other)
    _write_key(files.other_name_key, other_key)
    return files


def tls_arguments(tls: TlsFiles, port: int, auth_clients: str = "optional") -> list[str]:
    """redis-server arguments for TLS only on ``port`` (no plain port)."""
    return [
        "--port",
        "0",
        "--tls-port",
        str(port),
        "--tls-cert-file",
        str(tls.server_cert),
        "--tls-key-file",
        str(tls.server_key),
        "--tls-ca-cert-file",
        str(tls.ca),
        "--tls-auth-clients",
        auth_clients,
    ]


# -- processes ---------------------------------------------------------------------------------


@dataclass
class RedisProcess:
    port: int
    process: subprocess.Popen[bytes]
    folder: Path
    tls: TlsFiles | None = None

    def client(self) -> redis.Redis:
        if self.tls is None:
            return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)
        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            socket_timeout=2,
            ssl=True,
            ssl_ca_certs=str(self.tls.ca),
            ssl_check_hostname=False,  # the helper's own checks; the store's are tested
            ssl_certfile=str(self.tls.client_cert),
            ssl_keyfile=str(self.tls.client_key),
        )

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        if self.alive():
            self.process.kill()
            self.process.wait(timeout=10)

    def pause(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.alive():
            self.resume()
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_redis(folder: Path, port: int, *arguments: str, tls: TlsFiles | None = None) -> RedisProcess:
    folder.mkdir(parents=True, exist_ok=True)
    base = [REDIS_SERVER, "--bind", "127.0.0.1", "--dir", str(folder), "--save", "", "--appendonly", "no"]
    base += tls_arguments(tls, port) if tls is not None else ["--port", str(port)]
    with (folder / "redis.log").open("wb") as log:  # the child keeps its own descriptor
        process = subprocess.Popen([*base, *arguments], stdout=log, stderr=subprocess.STDOUT)
    node = RedisProcess(port, process, folder, tls)
    try:
        _wait(lambda: node.client().ping(), f"redis-server on {port}", node)
    except RuntimeError:
        node.stop()
        raise
    return node


def _wait(check: object, what: str, node: RedisProcess | None = None, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    last: Exception | None = None
    while time.monotonic() < deadline:
        if node is not None and not node.alive():
            raise RuntimeError(
                f"{what} exited: {(node.folder / 'redis.log').read_text(errors='replace')[-2000:]}"
            )
        try:
            if check():  # type: ignore[operator]
                return
        except (redis.RedisError, OSError) as error:
            last = error
        time.sleep(0.05)
    raise RuntimeError(f"waited {seconds:g}s for {what}: {last}")


# -- Sentinel ------------------------------------------------------------------------------------


@dataclass
class SentinelSet:
    primary: RedisProcess
    replicas: list[RedisProcess]
    sentinels: list[RedisProcess]
    tls: TlsFiles | None = None
    down_after_ms: int = 1000

    @property
    def url(self) -> str:
        scheme = "rediss+sentinel" if self.tls else "redis+sentinel"
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"{scheme}://{hosts}/{SERVICE}"

    def current_primary_port(self) -> int:
        for watcher in self.sentinels:
            if watcher.alive():
                _, port = watcher.client().sentinel_get_master_addr_by_name(SERVICE)
                return int(port)
        raise RuntimeError("no sentinel is running")

    def node(self, port: int) -> RedisProcess:
        return next(n for n in [self.primary, *self.replicas] if n.port == port)

    def kill_primary(self) -> RedisProcess:
        """SIGKILL the current primary; returns it."""
        victim = self.node(self.current_primary_port())
        victim.kill()
        return victim

    def wait_for_new_primary(self, old_port: int, seconds: float = 30) -> int:
        _wait(lambda: self.current_primary_port() != old_port, "a new primary", seconds=seconds)
        port = self.current_primary_port()
        _wait(lambda: self.node(port).client().info("replication")["role"] == "master", "the promotion")
        return port

    def stop(self) -> None:
        for node in [*self.sentinels, *self.replicas, self.primary]:
            node.stop()


def start_sentinel_set(
    folder: Path,
    replicas: int = 1,
    sentinels: int = 3,
    down_after_ms: int = 1000,
    tls: TlsFiles | None = None,
) -> SentinelSet:
    tls_replication = ["--tls-replication", "yes"] if tls else []
    primary = start_redis(folder / "primary", free_port(), *tls_replication, tls=tls)
    copies = [
        start_redis(
            folder / f"replica-{n}",
            free_port(),
            "--replicaof",
            "127.0.0.1",
            str(primary.port),
            *tls_replication,
            tls=tls,
        )
        for n in range(replicas)
    ]
    for copy in copies:
        _wait(
            lambda c=copy: c.client().info("replication").get("master_link_status") == "up",
            "replication",
            copy,
        )
    watchers = []
    for n in range(sentinels):
        port = free_port()
        where = folder / f"sentinel-{n}"
        where.mkdir(parents=True, exist_ok=True)
        lines = [
            "bind 127.0.0.1",
            f"dir {where}",
            *(tls_lines(tls, port) if tls else [f"port {port}"]),
            f"sentinel monitor {SERVICE} 127.0.0.1 {primary.port} 2",
            f"sentinel down-after-milliseconds {SERVICE} {down_after_ms}",
            f"sentinel failover-timeout {SERVICE} 5000",
            f"sentinel parallel-syncs {SERVICE} 1",
        ]
        config = where / "sentinel.conf"
        config.write_text("\n".join(lines) + "\n")
        with (where / "redis.log").open("wb") as log:
            process = subprocess.Popen(
                [REDIS_SERVER, str(config), "--sentinel"], stdout=log, stderr=subprocess.STDOUT
            )
        watcher = RedisProcess(port, process, where, tls)
        _wait(lambda w=watcher: w.client().ping(), f"sentinel on {port}", watcher)
        watchers.append(watcher)
    group = SentinelSet(primary, copies, watchers, tls, down_after_ms)
    _wait(
        lambda: all(
            int(w.client().sentinel_master(SERVICE)["num-other-sentinels"]) >= sentinels - 1
            and int(w.client().sentinel_master(SERVICE)["num-slaves"]) >= replicas
            for w in watchers
        ),
        "the sentinels to find each other and the replicas",
    )
    return group


def tls_lines(tls: TlsFiles, port: int) -> list[str]:
    return [
        "port 0",
        f"tls-port {port}",
        f"tls-cert-file {tls.server_cert}",
        f"tls-key-file {tls.server_key}",
        f"tls-ca-cert-file {tls.ca}",
        "tls-auth-clients optional",
        "tls-replication yes",
    ]


# -- Cluster -------------------------------------------------------------------------------------


@dataclass
class RedisClusterSet:
    nodes: list[RedisProcess]
    tls: TlsFiles | None = None
    killed: list[RedisProcess] = field(default_factory=list)

    @property
    def url(self) -> str:
        scheme = "rediss+cluster" if self.tls else "redis+cluster"
        return f"{scheme}://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes[:3])

    def primaries(self) -> list[RedisProcess]:
        found = []
        for node in self.nodes:
            if node.alive() and node.client().info("replication")["role"] == "master":
                found.append(node)
        return found

    def kill_primary_of(self, key: str) -> RedisProcess:
        client = self.live().client()
        slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))
        owner_port = _slot_owner(client, slot)
        victim = next(n for n in self.nodes if n.port == owner_port)
        victim.kill()
        self.killed.append(victim)
        return victim

    def live(self) -> RedisProcess:
        return next(n for n in self.nodes if n.alive())

    def wait_ok(self, seconds: float = 30) -> None:
        _wait(
            lambda: all(
                n.client().execute_command("CLUSTER", "INFO").decode().find("cluster_state:ok") >= 0
                for n in self.nodes
                if n.alive()
            ),
            "cluster_state:ok",
            seconds=seconds,
        )

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def _slot_owner(client: redis.Redis, slot: int) -> int:
    for start, end, primary, *_ in client.execute_command("CLUSTER", "SLOTS"):
        if int(start) <= slot <= int(end):
            return int(primary[1])
    raise LookupError(slot)


def start_cluster(
    folder: Path, primaries: int = 3, replicas: int = 1, tls: TlsFiles | None = None
) -> RedisClusterSet:
    extra = ["--tls-cluster", "yes", "--tls-replication", "yes"] if tls else []
    nodes = []
    for n in range(primaries * (1 + replicas)):
        port = free_port(with_bus=True)
        nodes.append(
            start_redis(
                folder / f"node-{n}",
                port,
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(folder / f"node-{n}" / "nodes.conf"),
                "--cluster-node-timeout",
                "1000",
                "--cluster-replica-validity-factor",
                "0",
                *extra,
                tls=tls,
            )
        )
    command = [REDIS_CLI, "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in nodes)]
    command += ["--cluster-replicas", str(replicas), "--cluster-yes"]
    if tls:
        command += [
            "--tls",
            "--cacert",
            str(tls.ca),
            "--cert",
            str(tls.client_cert),
            "--key",
            str(tls.client_key),
        ]
    created = subprocess.run(command, capture_output=True, text=True, timeout=60)
    if created.returncode != 0:
        raise RuntimeError(f"redis-cli --cluster create: {created.stdout[-1500:]} {created.stderr[-1500:]}")
    group = RedisClusterSet(nodes, tls)
    group.wait_ok()
    _wait(
        lambda: (
            len(group.primaries()) == primaries
            and all(
                n.client().info("replication").get("master_link_status") == "up"
                for n in nodes
                if n.client().info("replication")["role"] == "slave"
            )
        ),
        "cluster replication",
    )
    return group
