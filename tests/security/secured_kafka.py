"""An Apache Kafka node (KRaft, from its jars) with TLS, SCRAM and the StandardAuthorizer.

A configuration of the project's one launcher, `workers.broker.apache.KafkaNode`
(same jars, same cache: `make kafka-jars`, which includes kafka-tools).
Listeners, all on 127.0.0.1:
- SASL_SSL: SCRAM-SHA-256/512 and PLAIN, the one project clients use;
- SSL: mutual TLS (a client certificate is required; principal = its CN),
  also the inter-broker and controller listeners (principal `broker`);
- PLAINTEXT: principal ANONYMOUS, which holds no ACL unless `open_plaintext`
  makes it a super user (the benchmark compares it with SASL_SSL).

The broker JVM runs with C1 only (it starts faster, which is what tests want);
`full_jit=True` gives it the default tiered JIT, whose AES-GCM intrinsics a
production broker has (the benchmark).

`admin` is a super user (SCRAM); every other user gets only the ACLs a test
grants, through Kafka's own kafka-acls tool (org.apache.kafka.tools.AclCommand).
SCRAM users are added at format time (kafka-storage format --add-scram).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.security.pki import CertificateAuthority, Issued
from workers.broker.apache import KafkaNode, missing_requirements
from workers.kafka import clients
from workers.kafka.acls import ROLES, Grant, acl_arguments
from workers.kafka.config import KafkaConnection, KafkaSecurity

ADMIN = "admin"
LISTENERS = {"SASL_SSL": "SASL_SSL", "SSL": "SSL", "PLAINTEXT": "PLAINTEXT"}


def unavailable() -> str | None:
    """None when the secured broker can run here, else what to install or fetch."""
    return missing_requirements(tools=True)


@dataclass
class Users:
    passwords: dict[str, str] = field(default_factory=dict)

    def add(self, name: str) -> str:
        self.passwords[name] = f"{name}-{uuid.uuid4().hex[:12]}"
        return self.passwords[name]


class SecuredKafka:
    """The secured node, its certificate authority and its users (passwords in 0600 files)."""

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
        self.partitions = partitions  # of the project's topics; KAIZEN_PARTITIONS in `env`
        self.open_plaintext = open_plaintext
        self.pki = CertificateAuthority(directory / "pki")
        self.broker_cert: Issued = self.pki.issue("broker", server=True)
        self.users = Users()
        for name in [ADMIN, *users]:
            self.users.add(name)
        scram = [
            arg
            for name, password in self.users.passwords.items()
            for mechanism in ("SCRAM-SHA-512", "SCRAM-SHA-256")
            for arg in ("--add-scram", f"{mechanism}=[name={name},password={password}]")
        ]
        self.node = KafkaNode(
            directory,
            listeners=LISTENERS,
            controller_protocol="SSL",
            extra=self._properties(),
            format_args=scram,
            c1_only=not full_jit,
        )

    # -- addresses and client settings -------------------------------------------

    @property
    def sasl_bootstrap(self) -> str:
        return self.node.address("SASL_SSL")

    @property
    def ssl_bootstrap(self) -> str:
        return self.node.address("SSL")

    @property
    def plain_bootstrap(self) -> str:
        return self.node.address("PLAINTEXT")

    @property
    def log_path(self) -> Path:
        return self.node.log_path

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
        return {
            **clients.environment(self.connection(user)),
            "KAIZEN_PARTITIONS": str(self.partitions),
        }

    # -- lifecycle -------------------------------------------------------------------

    def _properties(self) -> dict[str, str]:
        """The node's TLS, SASL and authorizer settings (on top of KafkaNode's own)."""
        supers = [f"User:{ADMIN}", "User:broker"] + (
            ["User:ANONYMOUS"] if self.open_plaintext else []
        )
        plain_users = " ".join(
            f'user_{name}="{password}"' for name, password in self.users.passwords.items()
        )
        return {
            "inter.broker.listener.name": "SSL",
            "auto.create.topics.enable": "false",
            "num.partitions": "1",
            # TLS: PEM key store and trust store; client certificates on the SSL listeners
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(self.broker_cert.chain),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.pki.path),
            "ssl.client.auth": "required",
            "listener.name.sasl_ssl.ssl.client.auth": "none",
            "ssl.endpoint.identification.algorithm": "https",
            "ssl.principal.mapping.rules": "RULE:^CN=([^,]*).*$/$1/,DEFAULT",
            # SASL: SCRAM users from format time; PLAIN users listed here
            "sasl.enabled.mechanisms": "SCRAM-SHA-512,SCRAM-SHA-256,PLAIN",
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            ),
            "listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            ),
            "listener.name.sasl_ssl.plain.sasl.jaas.config": (
                f"org.apache.kafka.common.security.plain.PlainLoginModule required {plain_users};"
            ),
            # authorization: only what the ACLs grant
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users": ";".join(supers),
            "allow.everyone.if.no.acl.found": "false",
        }

    def start(self, timeout: float = 120.0) -> SecuredKafka:
        self.node.start(timeout)
        return self

    def stop(self) -> None:
        self.node.stop()

    # -- administration as the super user -------------------------------------------

    def admin_properties(self) -> Path:
        path = self.directory / "admin.properties"
        password = self.users.passwords[ADMIN]
        path.touch(mode=0o600)
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

    def acl_command(self, *args: str) -> list[str]:
        """Kafka's kafka-acls tool as the super user, with these arguments."""
        return self.node.java(
            "org.apache.kafka.tools.AclCommand",
            "--bootstrap-server",
            self.sasl_bootstrap,
            "--command-config",
            str(self.admin_properties()),
            *args,
        )

    def grant(self, *grants: tuple[str, str]) -> None:
        """Add exactly the documented ACLs (workers/kafka/acls.py) of each (role, principal),
        with Kafka's own kafka-acls tool, four JVMs at a time."""
        commands = [
            self.acl_command(*acl_arguments(principal, grant))
            for role, principal in grants
            for grant in ROLES[role]
        ]
        self._run(commands)

    @contextlib.contextmanager
    def without(self, principal: str, grant: Grant) -> Iterator[None]:
        """`grant` of `principal` removed inside the block, added back after it."""
        self._run([self.acl_command("--force", *acl_arguments(principal, grant, "--remove"))])
        try:
            yield
        finally:
            self._run([self.acl_command(*acl_arguments(principal, grant))])

    def _run(self, commands: list[list[str]]) -> None:
        for i in range(0, len(commands), 4):
            procs = [
                subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                for c in commands[i : i + 4]
            ]
            for proc, command in zip(procs, commands[i : i + 4], strict=True):
                _, err = proc.communicate(timeout=120)
                if proc.returncode != 0:
                    raise RuntimeError(f"kafka-acls failed ({command[-6:]}): {err.decode()[-500:]}")
