"""Security settings: parsing, checks, where the password may come from (pure, no broker)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from workers.cli import main
from workers.kafka.acls import ROLES, kafka_acls_commands
from workers.kafka.config import KafkaSecurity, SecurityError, bootstrap_hosts
from workers.settings import Settings, SettingsError

ROOT = Path(__file__).resolve().parents[2]


def test_every_bootstrap_host_is_kept() -> None:
    assert bootstrap_hosts("a:1, b:2,kafka://c:3,") == ("a:1", "b:2", "c:3")
    settings = Settings.from_env({"KAIZEN_BROKER": "a:1,b:2,c:3"})
    assert settings.kafka.bootstrap == ("a:1", "b:2", "c:3")


def test_env_settings_are_read_and_checked(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    env = {
        "KAIZEN_SECURITY_PROTOCOL": "sasl_ssl",
        "KAIZEN_SASL_MECHANISM": "scram-sha-256",
        "KAIZEN_SASL_USERNAME": "shipper",
        "KAIZEN_SASL_PASSWORD": "s3cret",
        "KAIZEN_SSL_CAFILE": str(ca),
    }
    security = Settings.from_env(env).security
    assert (security.protocol, security.mechanism, security.username) == (
        "SASL_SSL",
        "SCRAM-SHA-256",
        "shipper",
    )
    assert security.check_hostname and security.sasl_password() == "s3cret"
    for bad, message in (
        ({"KAIZEN_SECURITY_PROTOCOL": "TLS"}, "KAIZEN_SECURITY_PROTOCOL must be one of"),
        ({"KAIZEN_SASL_MECHANISM": "GSSAPI"}, "KAIZEN_SASL_MECHANISM must be one of"),
        ({"KAIZEN_SASL_USERNAME": ""}, "needs KAIZEN_SASL_USERNAME"),
        ({"KAIZEN_SASL_PASSWORD": ""}, "needs the password"),
        ({"KAIZEN_SSL_CAFILE": str(tmp_path / "nope.pem")}, "does not exist"),
        ({"KAIZEN_SSL_CERTFILE": str(ca)}, "go together"),
    ):
        with pytest.raises(SettingsError, match=message):
            Settings.from_env({**env, **bad})


def test_the_password_is_never_in_a_repr() -> None:
    settings = Settings.from_env(
        {
            "KAIZEN_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "KAIZEN_SASL_USERNAME": "u",
            "KAIZEN_SASL_PASSWORD": "hunter2-secret",
            "KAIZEN_API_TOKEN": "token-secret",
        }
    )
    text = repr(settings) + str(settings) + settings.security.describe()
    assert "hunter2-secret" not in text and "token-secret" not in text


def test_a_password_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "password"
    path.write_text("pw\n")
    security = KafkaSecurity(protocol="SASL_SSL", username="u", password_file=str(path))
    for mode in (0o640, 0o604, 0o644):
        os.chmod(path, mode)
        with pytest.raises(SecurityError, match=f"run `chmod 600 {path}`"):
            security.sasl_password()
    os.chmod(path, 0o600)
    assert security.sasl_password() == "pw"


def test_no_command_takes_a_password_argument(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("worker", "ship", "replay", "tail", "import", "sessions"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        out = capsys.readouterr().out
        assert "--sasl-password-file" in out, command
        assert "--sasl-password " not in out and "--sasl-password\n" not in out, command
    assert main(["replay", "x", "--sasl-password", "pw"]) == 2


def test_flags_override_the_environment(tmp_path: Path) -> None:
    from argparse import Namespace

    from workers.cli.options import settings_from

    args = Namespace(
        broker="h1:1,h2:2",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        sasl_username="op",
        sasl_password_file=str(tmp_path / "pw"),
        ssl_cafile=None,
        ssl_certfile=None,
        ssl_keyfile=None,
        check_hostname=None,
    )
    settings = settings_from(args)
    assert settings.kafka.bootstrap == ("h1:1", "h2:2")
    assert settings.security.mechanism == "PLAIN" and settings.security.username == "op"


def test_the_shipper_wants_its_password_in_a_private_file(tmp_path: Path) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith("KAIZEN_")} | {
        "KAIZEN_SPOOL_DIR": str(tmp_path / "spool"),
        "KAIZEN_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KAIZEN_SASL_USERNAME": "shipper",
    }
    ship = [sys.executable, "-m", "workers", "ship", "--quiet"]
    from_env = subprocess.run(
        ship, env={**base, "KAIZEN_SASL_PASSWORD": "pw"}, capture_output=True, text=True, cwd=ROOT
    )
    assert from_env.returncode == 2
    assert "KAIZEN_SASL_PASSWORD_FILE" in from_env.stderr and "Traceback" not in from_env.stderr
    password = tmp_path / "password"
    password.write_text("pw\n")
    os.chmod(password, 0o644)
    loose = subprocess.run(
        ship,
        env={**base, "KAIZEN_SASL_PASSWORD_FILE": str(password)},
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert loose.returncode == 2
    assert loose.stderr.strip() == (
        f"kaizen-stream: KAIZEN_SASL_PASSWORD_FILE {password} can be read by others "
        f"(mode 0644); run `chmod 600 {password}` and try again"
    )


def test_hooks_install_writes_no_secret(tmp_path: Path) -> None:
    password = tmp_path / "password"
    password.write_text("never-in-settings\n")
    os.chmod(password, 0o600)
    (tmp_path / ".claude").mkdir()
    (tmp_path / ".cursor").mkdir()
    (tmp_path / ".codex").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAIZEN_")} | {
        "HOME": str(tmp_path),
        "KAIZEN_SECURITY_PROTOCOL": "SASL_SSL",
        "KAIZEN_SASL_USERNAME": "shipper",
        "KAIZEN_SASL_PASSWORD": "env-secret-value",
        "KAIZEN_SASL_PASSWORD_FILE": str(password),
        "KAIZEN_API_TOKEN": "api-token-value",
    }
    env.pop("CODEX_HOME", None)
    subprocess.run(
        [sys.executable, "-m", "workers", "hooks", "install", "--broker", "k1:9093,k2:9093"],
        env=env,
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p != password]
    assert written, "hooks install wrote nothing"
    for path in written:
        text = path.read_text()
        for secret in ("env-secret-value", "never-in-settings", "api-token-value", "PASSWORD"):
            assert secret not in text, (path, secret)


def test_acl_commands_are_documented() -> None:
    """docs/OPERATIONS.md lists exactly the ACLs the secured-broker tests grant."""
    doc = (ROOT / "docs" / "OPERATIONS.md").read_text()
    for role in ROLES:
        for command in kafka_acls_commands(role, role):
            assert command in doc, command
