"""An Apache Kafka node (KRaft, from its jars) with TLS, SCRAM and the StandardAuthorizer.

Listeners, all on 127.0.0.1:
- SASL_SSL: SCRAM-SHA-256/512 and PLAIN, the one project clients use;
- SSL: mutual TLS (a client certificate is required; principal = its CN),
  also the inter-broker and controller listeners (principal `broker`);
- PLAINTEXT: principal ANONYMOUS, which holds no ACL unless `open_plaintext`
  makes it a super user (the benchmark compares it with SASL_SSL).

The JVMs run with C1 only (-XX:TieredStopAtLevel=1): they start faster, which
is what tests want. C1 has no AES-GCM intrinsics, so a C1 broker encrypts TLS
traffic many times slower than a production broker (full tiered JIT);
`full_jit=True` runs the broker itself with the default JIT (the benchmark).

`admin` is a super user (SCRAM); every other user gets only the ACLs a test
grants, through Kafka's own kafka-acls tool (org.apache.kafka.tools.AclCommand).
SCRAM users are added at format time (kafka-storage format --add-scram).

The jars (kafka_2.13 and kafka-tools 4.1.1) come from Maven into
~/.cache/kaizen-stream/kafka-4.1.1-secured (or $KAIZEN_KAFKA_SECURED_LIBS).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tests.procs import stop
from tests.security.pki import CertificateAuthority, Issued
from workers.broker.embedded import free_port
from workers.kafka.acls import ROLES, acl_arguments
from workers.kafka.config import KafkaConnection, KafkaSecurity

KAFKA_VERSION = "4.1.1"
POM = f"""<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>kaizen</groupId><artifactId>kafka-secured-test-broker</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{KAFKA_VERSION}</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId>
      <version>{KAFKA_VERSION}</version></dependency>
  </dependencies>
</project>
"""
ADMIN = "admin"


class KafkaUnavailable(RuntimeError):
    """Java or Maven is missing: the message says what to install."""


def libs() -> Path:
    """The directory of Kafka's jars, fetched by Maven on first use."""
    given = os.environ.get("KAIZEN_KAFKA_SECURED_LIBS")
    if given:
        return Path(given)
    base = Path.home() / ".cache" / "kaizen-stream" / f"kafka-{KAFKA_VERSION}-secured"
    out = base / "libs"
    if (base / ".complete").exists():
        return out
    for tool in ("java", "mvn"):
        if shutil.which(tool) is None:
            raise KafkaUnavailable(
                f"the Apache Kafka security tests need Java 17+ and Maven ({tool} is not on "
                "PATH): install them (apt-get install openjdk-17-jre-headless maven)"
            )
    base.mkdir(parents=True, exist_ok=True)
    (base / "pom.xml").write_text(POM)
    subprocess.run(
        [
            "mvn",
            "-q",
            "-f",
            str(base / "pom.xml"),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={out}",
        ],
        check=True,
    )
    (base / ".complete").touch()
    return out


@dataclass
class Users:
    passwords: dict[str, str] = field(default_factory=dict)

    def add(self, name: str) -> str:
        self.passwords[name] = f"{name}-{uuid.uuid4().hex[:12]}"
        return self.passwords[name]


class SecuredKafka:
    def __init__(
        self,
        directory: Path,
        users: list[str],
        *,
        open_plaintext: bool = False,
        partitions: int = 2,
        full_jit: bool = False,
    ) -> None:
        self.directory = directory
        self.full_jit = full_jit
        self.partitions = partitions  # of the project's topics; KAIZEN_PARTITIONS in `env`
        self.open_plaintext = open_plaintext
        self.pki = CertificateAuthority(directory / "pki")
        self.broker_cert: Issued = self.pki.issue("broker", server=True)
        self.users = Users()
        for name in [ADMIN, *users]:
            self.users.add(name)
        self.sasl_port = free_port()
        self.ssl_port = free_port()
        self.plain_port = free_port()
        self.controller_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = directory / "kafka.log"

    # -- addresses and client settings -------------------------------------------

    @property
    def sasl_bootstrap(self) -> str:
        return f"127.0.0.1:{self.sasl_port}"

    @property
    def ssl_bootstrap(self) -> str:
        return f"127.0.0.1:{self.ssl_port}"

    @property
    def plain_bootstrap(self) -> str:
        return f"127.0.0.1:{self.plain_port}"

    def password_file(self, user: str, password: str | None = None) -> Path:
        """A 0600 file holding the user's password (or `password`)."""
        path = self.directory / "secrets" / f"{user}.password"
        path.parent.mkdir(exist_ok=True, mode=0o700)
        path.write_text((password or self.users.passwords[user]) + "\n")
        os.chmod(path, 0o600)
        return path

    def security(self, user: str, mechanism: str = "SCRAM-SHA-512") -> KafkaSecurity:
        return KafkaSecurity(
            protocol="SASL_SSL",
            mechanism=mechanism,
            username=user,
            password_file=str(self.password_file(user)),
            cafile=str(self.pki.path),
        )

    def connection(self, user: str, mechanism: str = "SCRAM-SHA-512") -> KafkaConnection:
        return KafkaConnection((self.sasl_bootstrap,), self.security(user, mechanism))

    def env(self, user: str) -> dict[str, str]:
        """KAIZEN_* variables for a process that connects as `user` over SASL_SSL."""
        security = self.security(user)
        assert security.password_file and security.cafile
        return {
            "KAIZEN_BROKER": self.sasl_bootstrap,
            "KAIZEN_SECURITY_PROTOCOL": "SASL_SSL",
            "KAIZEN_SASL_MECHANISM": security.mechanism,
            "KAIZEN_SASL_USERNAME": user,
            "KAIZEN_SASL_PASSWORD_FILE": security.password_file,
            "KAIZEN_SSL_CAFILE": security.cafile,
            "KAIZEN_PARTITIONS": str(self.partitions),
        }

    # -- lifecycle -------------------------------------------------------------------

    def _properties(self) -> str:
        chain, ca = self.broker_cert.chain, self.pki.path
        supers = [f"User:{ADMIN}", "User:broker"] + (
            ["User:ANONYMOUS"] if self.open_plaintext else []
        )
        plain_users = " ".join(
            f'user_{name}="{password}"' for name, password in self.users.passwords.items()
        )
        return "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}",
                f"listeners=SASL_SSL://127.0.0.1:{self.sasl_port},SSL://127.0.0.1:{self.ssl_port},"
                f"PLAINTEXT://127.0.0.1:{self.plain_port},"
                f"CONTROLLER://127.0.0.1:{self.controller_port}",
                f"advertised.listeners=SASL_SSL://127.0.0.1:{self.sasl_port},"
                f"SSL://127.0.0.1:{self.ssl_port},PLAINTEXT://127.0.0.1:{self.plain_port}",
                "listener.security.protocol.map=SASL_SSL:SASL_SSL,SSL:SSL,PLAINTEXT:PLAINTEXT,"
                "CONTROLLER:SSL",
                "inter.broker.listener.name=SSL",
                "controller.listener.names=CONTROLLER",
                f"log.dirs={self.directory / 'data'}",
                "offsets.topic.replication.factor=1",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
                "auto.create.topics.enable=false",
                "num.partitions=1",
                # TLS: PEM key store and trust store; client certificates on the SSL listeners
                "ssl.keystore.type=PEM",
                f"ssl.keystore.location={chain}",
                "ssl.truststore.type=PEM",
                f"ssl.truststore.location={ca}",
                "ssl.client.auth=required",
                "listener.name.sasl_ssl.ssl.client.auth=none",
                "ssl.endpoint.identification.algorithm=https",
                "ssl.principal.mapping.rules=RULE:^CN=([^,]*).*$/$1/,DEFAULT",
                # SASL: SCRAM users from format time; PLAIN users listed here
                "sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256,PLAIN",
                "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config="
                "org.apache.kafka.common.security.scram.ScramLoginModule required;",
                "listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config="
                "org.apache.kafka.common.security.scram.ScramLoginModule required;",
                "listener.name.sasl_ssl.plain.sasl.jaas.config="
                f"org.apache.kafka.common.security.plain.PlainLoginModule required {plain_users};",
                # authorization: only what the ACLs grant
                "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                f"super.users={';'.join(supers)}",
                "allow.everyone.if.no.acl.found=false",
                "",
            ]
        )

    def _java(
        self, main: str, *args: str, heap: str = "-Xmx256m", c1_only: bool = True
    ) -> list[str]:
        jit = ["-XX:TieredStopAtLevel=1"] if c1_only else []
        return [
            "java", heap, *jit, "-Xshare:auto",
            "-Dlog4j2.level=WARN", "-cp", f"{libs()}/*", main, *args,
        ]  # fmt: skip

    def start(self, timeout: float = 90.0) -> SecuredKafka:
        props = self.directory / "server.properties"
        props.write_text(self._properties())
        os.chmod(props, 0o600)
        cluster = subprocess.run(
            self._java("kafka.tools.StorageTool", "random-uuid"),
            check=True, capture_output=True, text=True,
        ).stdout.strip()  # fmt: skip
        scram = []
        for name, password in self.users.passwords.items():
            for mech in ("SCRAM-SHA-512", "SCRAM-SHA-256"):
                scram += ["--add-scram", f"{mech}=[name={name},password={password}]"]
        storage = ("kafka.tools.StorageTool", "format", "-t", cluster, "-c", str(props))
        subprocess.run(self._java(*storage, *scram), check=True, capture_output=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it
        self.process = subprocess.Popen(
            self._java("kafka.Kafka", str(props), heap="-Xmx512m", c1_only=not self.full_jit),
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + timeout
        while not self._ready():
            if self.process.poll() is not None:
                raise RuntimeError(f"Kafka exited at start; see {self.log_path}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"Kafka did not start in {timeout:.0f}s; see {self.log_path}")
            time.sleep(0.3)
        return self

    def _ready(self) -> bool:
        # the broker opens its client listeners last, once it is registered
        for port in (self.sasl_port, self.plain_port):
            with socket.socket() as sock:
                sock.settimeout(0.5)
                if sock.connect_ex(("127.0.0.1", port)) != 0:
                    return False
        return True

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)
            self.process = None

    # -- administration as the super user -------------------------------------------

    def admin_properties(self) -> Path:
        path = self.directory / "admin.properties"
        password = self.users.passwords[ADMIN]
        path.write_text(
            "\n".join(
                [
                    "security.protocol=SASL_SSL",
                    "sasl.mechanism=SCRAM-SHA-512",
                    "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule "
                    f'required username="{ADMIN}" password="{password}";',
                    "ssl.truststore.type=PEM",
                    f"ssl.truststore.location={self.pki.path}",
                    "",
                ]
            )
        )
        os.chmod(path, 0o600)
        return path

    def grant(self, *grants: tuple[str, str]) -> None:
        """Add exactly the documented ACLs (workers/kafka/acls.py) of each (role, principal),
        with Kafka's own kafka-acls tool, four JVMs at a time."""
        config = self.admin_properties()
        commands = [
            self._java(
                "org.apache.kafka.tools.AclCommand",
                "--bootstrap-server",
                self.sasl_bootstrap,
                "--command-config",
                str(config),
                *acl_arguments(principal, grant),
            )
            for role, principal in grants
            for grant in ROLES[role]
        ]
        for i in range(0, len(commands), 4):
            procs = [
                subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                for c in commands[i : i + 4]
            ]
            for proc, command in zip(procs, commands[i : i + 4], strict=True):
                _, err = proc.communicate(timeout=120)
                if proc.returncode != 0:
                    raise RuntimeError(f"kafka-acls failed ({command[-6:]}): {err.decode()[-500:]}")
