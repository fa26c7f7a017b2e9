"""Apache Kafka (KRaft) from its jars on loopback: one node, or a cluster of three.

The tests and the benchmarks start Apache Kafka themselves, from the jars Maven
copies into a cache outside the repo (`make kafka-jars`, pom in `kafka/pom.xml`).
`KafkaNode` owns one `kafka.Kafka` JVM (combined broker and controller): it
formats its storage once, refuses ports already in use, waits until the broker
listener answers, and stops (or kills) only its own process. `KafkaCluster`
owns three such nodes that vote for one another. A node's JVM dies with the
thread that started it (so start brokers from a thread that outlives them).
Data lives under the node's directory, so a stopped node keeps its topics and
offsets; `wipe()` is the broker restarted empty (new storage and cluster id,
same port).

Settings chosen for loopback tests, not production: small heaps, no initial
rebalance delay, internal topics at the cluster's size.

A node is one PLAINTEXT listener by default; `listeners` (name -> security
protocol, each on its own free port), `controller_protocol`, `extra` properties
(TLS, SASL, an authorizer) and `format_args` (SCRAM users) make it a secured
broker (tests/security/secured_kafka.py). `c1_only` runs the broker JVM with
the C1 compiler alone: it starts sooner, but has no AES-GCM intrinsics, so its
TLS is many times slower than a production broker's (tools always run on C1:
they live for seconds).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

from workers.broker.embedded import BrokerError, end_process, free_port, port_in_use

KAFKA_VERSION = "4.1.1"
REPO_ROOT = Path(__file__).resolve().parents[2]
POM = REPO_ROOT / "kafka" / "pom.xml"


def default_libs() -> Path:
    """Where `make kafka-jars` puts the jars: $KAIZEN_KAFKA_LIBS or the user's cache."""
    configured = os.environ.get("KAIZEN_KAFKA_LIBS")
    if configured:
        return Path(configured)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "kaizen-stream" / f"kafka-{KAFKA_VERSION}"


def missing_requirements(libs: Path | None = None, *, tools: bool = False) -> str | None:
    """None when Apache Kafka (and with `tools`, its command-line tools) can run here, else
    one line: what is missing and what to do."""
    libs = default_libs() if libs is None else libs
    if shutil.which("java") is None:
        return (
            "Apache Kafka needs Java 17+ (e.g. `apt-get install openjdk-17-jre-headless maven`), "
            "then `make kafka-jars`; or run on the embedded broker: KAIZEN_TEST_BROKER=tansu"
        )
    if not any(libs.glob("kafka_2.13-*.jar")):
        return (
            f"the Apache Kafka {KAFKA_VERSION} jars are not in {libs}: run `make kafka-jars` "
            "(needs Maven); or run on the embedded broker: KAIZEN_TEST_BROKER=tansu"
        )
    if tools and not any(libs.glob("kafka-tools-*.jar")):
        return (
            f"Kafka's tools (kafka-tools, in kafka/pom.xml) are not in {libs}: run "
            "`make kafka-jars` to fetch them"
        )
    return None


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL the JVM when the process that started it dies, so an
    interrupted test run or benchmark never leaves brokers behind (Linux; elsewhere a no-op)."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def java_command(
    libs: Path, heap_mb: int, main: str, *args: str, c1_only: bool = True
) -> list[str]:
    """A JVM running `main` of Kafka's jars (C1 alone by default: see the module docstring)."""
    return [
        "java",
        f"-Xmx{heap_mb}m",
        f"-Xms{min(heap_mb, 128)}m",
        *(["-XX:TieredStopAtLevel=1"] if c1_only else []),
        "-XX:+UseSerialGC",  # two shared cores: no parallel GC threads competing
        "-Djava.awt.headless=true",
        "-Dlog4j2.level=WARN",
        "-cp",
        f"{libs}/*",
        main,
        *args,
    ]


def random_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, base64url without padding, never starting with
    '-' (as Kafka's own Uuid.randomUuid: a leading '-' reads as an option on command lines)."""
    import base64

    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


class KafkaNode:
    """One Apache Kafka process, broker and controller in one, on 127.0.0.1."""

    def __init__(
        self,
        directory: Path,
        *,
        node_id: int = 1,
        port: int | None = None,
        controller_port: int | None = None,
        voters: str | None = None,
        cluster_id: str | None = None,
        heap_mb: int = 512,
        extra: Mapping[str, str] | None = None,
        libs: Path | None = None,
        listeners: Mapping[str, str] | None = None,
        controller_protocol: str = "PLAINTEXT",
        format_args: Sequence[str] = (),
        c1_only: bool = False,
    ) -> None:
        self.directory = directory
        self.node_id = node_id
        self.host = "127.0.0.1"
        # client listeners, name -> security protocol; the first is `bootstrap` (and `port`)
        # and carries inter-broker traffic unless `extra` names another
        self.listeners = dict(listeners or {"PLAINTEXT": "PLAINTEXT"})
        first = next(iter(self.listeners))
        self.ports = {
            name: port if name == first and port is not None else free_port()
            for name in self.listeners
        }
        self.port = self.ports[first]
        self.controller_port = controller_port if controller_port is not None else free_port()
        self.controller_protocol = controller_protocol
        self.voters = voters or f"{node_id}@{self.host}:{self.controller_port}"
        self.cluster_id = cluster_id or random_cluster_id()
        self.heap_mb = heap_mb
        self.extra = dict(extra or {})
        self.format_args = tuple(format_args)
        self.c1_only = c1_only
        self.libs = default_libs() if libs is None else libs
        self.process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    kind = "kafka"

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def address(self, listener: str) -> str:
        """host:port of one of the node's client listeners."""
        return f"{self.host}:{self.ports[listener]}"

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def log_path(self) -> Path:
        return self.directory / "kafka.log"

    def properties(self) -> dict[str, str]:
        """server.properties of this node (pure: the same node gives the same text)."""
        replicas = str(len(self.voters.split(",")))
        advertised = [f"{name}://{self.address(name)}" for name in self.listeners]
        return {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.voters": self.voters,
            "listeners": ",".join(
                [*advertised, f"CONTROLLER://{self.host}:{self.controller_port}"]
            ),
            "advertised.listeners": ",".join(advertised),
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": next(iter(self.listeners)),
            "listener.security.protocol.map": ",".join(
                [
                    *(f"{name}:{protocol}" for name, protocol in self.listeners.items()),
                    f"CONTROLLER:{self.controller_protocol}",
                ]
            ),
            "log.dirs": str(self.data_dir),
            "offsets.topic.replication.factor": replicas,
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": replicas,
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": replicas,
            "share.coordinator.state.topic.min.isr": "1",
            "default.replication.factor": replicas,
            "group.initial.rebalance.delay.ms": "0",
            "num.network.threads": "2",
            "num.io.threads": "2",
            "num.recovery.threads.per.data.dir": "1",
            "log.segment.bytes": str(64 * 1024 * 1024),
            "unclean.leader.election.enable": "false",
            # room for messages above the worker's 1 MiB event limit, so that tests can send
            # them and see them dead-lettered (Kafka's default refuses them at produce)
            "message.max.bytes": str(16 << 20),
            "replica.fetch.max.bytes": str(16 << 20),
            **self.extra,
        }

    def _write_properties(self) -> Path:
        path = self.directory / "server.properties"
        # owner-only before anything is written: `extra` may hold SASL passwords
        path.touch(mode=0o600)
        path.chmod(0o600)
        path.write_text("".join(f"{k}={v}\n" for k, v in self.properties().items()))
        return path

    def java(self, main: str, *args: str, heap_mb: int = 256) -> list[str]:
        """A tool of Kafka's jars (`main`), as a command line, run on C1 (it lives seconds)."""
        return java_command(self.libs, heap_mb, main, *args)

    def _format(self, config: Path) -> None:
        if (self.data_dir / "meta.properties").exists():
            return
        result = subprocess.run(
            self.java(
                "kafka.tools.StorageTool",
                "format",
                *(f"--cluster-id={self.cluster_id}", "-c", str(config), "--ignore-formatted"),
                *self.format_args,
            ),
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise BrokerError(f"formatting Kafka storage failed: {result.stderr.strip()[-500:]}")

    def start(self, timeout: float = 120.0, wait: bool = True) -> KafkaNode:
        """Start the JVM; with `wait`, return once the broker listener accepts connections."""
        missing = missing_requirements(self.libs)
        if missing:
            raise BrokerError(missing)
        for port in (*self.ports.values(), self.controller_port):
            if port_in_use(self.host, port):
                raise BrokerError(f"port {port} on {self.host} is already in use")
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self._write_properties()
        self._format(config)
        self._log_file = self.log_path.open("ab")
        self.process = subprocess.Popen(
            java_command(self.libs, self.heap_mb, "kafka.Kafka", str(config), c1_only=self.c1_only),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the test run, which stops the node in order
            preexec_fn=_die_with_parent,
        )
        if wait:
            self.wait_listening(timeout)
        return self

    def wait_listening(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        # the broker opens its client listeners once it has registered; wait for all of them
        while not all(port_in_use(self.host, port) for port in self.ports.values()):
            if self.process is None or self.process.poll() is not None:
                code = None if self.process is None else self.process.returncode
                raise BrokerError(f"Kafka node {self.node_id} exited ({code}); see {self.log_path}")
            if time.monotonic() > deadline:
                self.kill()
                raise BrokerError(
                    f"Kafka node {self.node_id} did not listen on {self.bootstrap} in {timeout}s; "
                    f"see {self.log_path}"
                )
            time.sleep(0.1)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 60.0) -> None:
        """A clean shutdown (SIGTERM: Kafka hands over leadership), then SIGKILL if it hangs."""
        self._end(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """kill -9: what a crashed machine looks like to the rest of the cluster."""
        self._end(signal.SIGKILL, 30.0)

    def _end(self, sig: signal.Signals, timeout: float) -> None:
        proc, self.process = self.process, None
        if proc is not None:
            end_process(proc, sig, timeout)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def wipe(self) -> None:
        """The broker restarted empty: storage and cluster id are new, the port stays."""
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.cluster_id = random_cluster_id()
        self.start()

    def __enter__(self) -> KafkaNode:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class KafkaCluster:
    """Three (or `size`) KafkaNodes on loopback forming one KRaft quorum and one cluster."""

    kind = "kafka"

    def __init__(
        self,
        directory: Path,
        size: int = 3,
        heap_mb: int = 384,
        extra: Mapping[str, str] | None = None,
        libs: Path | None = None,
    ) -> None:
        controller_ports = [free_port() for _ in range(size)]
        voters = ",".join(f"{i + 1}@127.0.0.1:{p}" for i, p in enumerate(controller_ports))
        cluster_id = random_cluster_id()
        settings = {
            "min.insync.replicas": str(min(2, size)),
            # a killed node is noticed in seconds, not the default 9 s: failover tests stay short
            "broker.heartbeat.interval.ms": "500",
            "broker.session.timeout.ms": "3000",
            **(extra or {}),
        }
        self.nodes = [
            KafkaNode(
                directory / f"node{i + 1}",
                node_id=i + 1,
                controller_port=controller_ports[i],
                voters=voters,
                cluster_id=cluster_id,
                heap_mb=heap_mb,
                extra=settings,
                libs=libs,
            )
            for i in range(size)
        ]

    @property
    def bootstrap(self) -> str:
        """Every node's address, comma-separated (clients must get them all)."""
        return ",".join(n.bootstrap for n in self.nodes)

    def start(self, timeout: float = 180.0) -> KafkaCluster:
        # all at once: a node's broker only listens once its controller quorum has formed
        for node in self.nodes:
            node.start(wait=False)
        try:
            for node in self.nodes:
                node.wait_listening(timeout)
        except BrokerError:
            self.stop()
            raise
        return self

    def node(self, node_id: int) -> KafkaNode:
        return next(n for n in self.nodes if n.node_id == node_id)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> KafkaCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
