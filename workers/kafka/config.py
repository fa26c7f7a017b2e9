"""How to reach and authenticate to Kafka: bootstrap hosts, TLS and SASL settings.

Stdlib only (the hook path imports workers.settings, which holds a
`KafkaSecurity`). This module owns three invariants:

- every bootstrap host in KAIZEN_BROKER is kept, in order (`bootstrap_hosts`);
- the SASL password never sits in a field that a repr, a log line or an
  agent's settings file could show: it is read from KAIZEN_SASL_PASSWORD_FILE
  (or KAIZEN_SASL_PASSWORD) only when a client is built (`sasl_password`);
- a password file that anyone but its owner can read is refused, with the
  chmod that fixes it (`read_password_file`).
"""

from __future__ import annotations

import os
import ssl
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from workers.errors import KaizenError

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")

# environment name -> KafkaSecurity field; the README's configuration table lists them
ENV_FIELDS = {
    "KAIZEN_SECURITY_PROTOCOL": "protocol",
    "KAIZEN_SASL_MECHANISM": "mechanism",
    "KAIZEN_SASL_USERNAME": "username",
    "KAIZEN_SASL_PASSWORD_FILE": "password_file",
    "KAIZEN_SSL_CAFILE": "cafile",
    "KAIZEN_SSL_CERTFILE": "certfile",
    "KAIZEN_SSL_KEYFILE": "keyfile",
}
PASSWORD_ENV = "KAIZEN_SASL_PASSWORD"
CHECK_HOSTNAME_ENV = "KAIZEN_SSL_CHECK_HOSTNAME"


class SecurityError(KaizenError, ValueError):
    """A security setting cannot be used; the message names it and says what to do."""


def bootstrap_hosts(broker: str) -> tuple[str, ...]:
    """Every host:port of a comma-separated KAIZEN_BROKER, in order, without URL schemes."""
    hosts = []
    for part in broker.split(","):
        host = part.strip()
        if "://" in host:
            host = host.split("://", 1)[1]
        if host:
            hosts.append(host)
    return tuple(hosts)


def _flag(value: str, name: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise SecurityError(f"{name} must be true or false, not {value!r}")


def read_password_file(path: str) -> str:
    """The password in `path` (one line); SecurityError if it is missing or readable by others."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise SecurityError(
            f"KAIZEN_SASL_PASSWORD_FILE {path}: {exc.strerror}; "
            "write the password into it and run `chmod 600` on it"
        ) from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecurityError(
            f"KAIZEN_SASL_PASSWORD_FILE {path} can be read by others "
            f"(mode {stat.S_IMODE(st.st_mode):04o}); run `chmod 600 {path}` and try again"
        )
    with open(path, encoding="utf-8") as fh:
        password = fh.read().rstrip("\r\n")
    if not password:
        raise SecurityError(f"KAIZEN_SASL_PASSWORD_FILE {path} is empty")
    return password


@dataclass(frozen=True, slots=True)
class KafkaSecurity:
    """The TLS and SASL settings every Kafka client of the project is built from."""

    protocol: str = "PLAINTEXT"
    mechanism: str = "SCRAM-SHA-512"
    username: str | None = None
    password_file: str | None = None
    # from KAIZEN_SASL_PASSWORD; kept out of repr so no log line or traceback shows it
    password_env: str | None = field(default=None, repr=False)
    cafile: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    check_hostname: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> KafkaSecurity:
        env = os.environ if env is None else env
        given: dict[str, object] = {
            name: env[key] for key, name in ENV_FIELDS.items() if env.get(key)
        }
        if env.get(PASSWORD_ENV):
            given["password_env"] = env[PASSWORD_ENV]
        if env.get(CHECK_HOSTNAME_ENV):
            given["check_hostname"] = _flag(env[CHECK_HOSTNAME_ENV], CHECK_HOSTNAME_ENV)
        return cls().override(**given)

    def override(self, **changes: object) -> KafkaSecurity:
        """A checked copy with the given fields replaced; None values are ignored."""
        given = {k: v for k, v in changes.items() if v is not None}
        for name in ("protocol", "mechanism"):
            if name in given:
                given[name] = str(given[name]).strip().upper()
        out = replace(self, **given)  # type: ignore[arg-type]
        out.check()
        return out

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def sasl(self) -> bool:
        return self.protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    def check(self) -> None:
        """SecurityError when the settings contradict each other or name missing files."""
        if self.protocol not in PROTOCOLS:
            raise SecurityError(
                f"KAIZEN_SECURITY_PROTOCOL must be one of {', '.join(PROTOCOLS)}, "
                f"not {self.protocol!r}"
            )
        if self.mechanism not in MECHANISMS:
            raise SecurityError(
                f"KAIZEN_SASL_MECHANISM must be one of {', '.join(MECHANISMS)}, "
                f"not {self.mechanism!r}"
            )
        if self.sasl and not self.username:
            raise SecurityError(
                f"KAIZEN_SECURITY_PROTOCOL={self.protocol} needs KAIZEN_SASL_USERNAME"
            )
        if self.sasl and not (self.password_file or self.password_env):
            raise SecurityError(
                f"KAIZEN_SECURITY_PROTOCOL={self.protocol} needs the password: put it in a "
                "file only you can read (chmod 600) and set KAIZEN_SASL_PASSWORD_FILE"
            )
        if bool(self.certfile) != bool(self.keyfile) and not self._cert_holds_key():
            raise SecurityError(
                "KAIZEN_SSL_CERTFILE and KAIZEN_SSL_KEYFILE go together (mutual TLS): set both"
            )
        for env_name, path in (
            ("KAIZEN_SSL_CAFILE", self.cafile),
            ("KAIZEN_SSL_CERTFILE", self.certfile),
            ("KAIZEN_SSL_KEYFILE", self.keyfile),
        ):
            if path and not os.path.isfile(path):
                raise SecurityError(f"{env_name} {path} does not exist")

    def _cert_holds_key(self) -> bool:
        # a PEM file may hold the key beside the certificate: certfile alone is enough then
        if not self.certfile or self.keyfile:
            return False
        try:
            return b"PRIVATE KEY" in Path(self.certfile).read_bytes()
        except OSError:
            return False

    def sasl_password(self) -> str:
        """The SASL password: from the file when one is named, else from the environment."""
        if self.password_file:
            return read_password_file(self.password_file)
        if self.password_env:
            return self.password_env
        raise SecurityError("no SASL password: set KAIZEN_SASL_PASSWORD_FILE")

    def ssl_context(self) -> ssl.SSLContext | None:
        """TLS context for SSL and SASL_SSL (else None): CA, client cert, hostname check."""
        if not self.tls:
            return None
        try:
            context = ssl.create_default_context(cafile=self.cafile)
            if self.certfile:
                context.load_cert_chain(self.certfile, self.keyfile)
        except (OSError, ssl.SSLError) as exc:
            raise SecurityError(
                f"cannot load the TLS files (KAIZEN_SSL_CAFILE/CERTFILE/KEYFILE): {exc}"
            ) from None
        context.check_hostname = self.check_hostname
        return context

    def describe(self) -> str:
        """One line for logs and error messages; never the password."""
        parts = [self.protocol]
        if self.sasl:
            parts.append(f"{self.mechanism} as {self.username}")
        if self.tls and self.certfile:
            parts.append(f"client certificate {self.certfile}")
        return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class KafkaConnection:
    """Where and how to connect: every bootstrap host, TLS/SASL, producer compression."""

    bootstrap: tuple[str, ...]
    security: KafkaSecurity = field(default_factory=KafkaSecurity)
    compression: str = "zstd"

    @property
    def servers(self) -> str:
        """The bootstrap hosts as one comma-separated string."""
        return ",".join(self.bootstrap)
