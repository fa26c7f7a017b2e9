"""Misconfigured clients get one line naming the cause, from every command, no traceback;
the shipper keeps its events until the cause is fixed, then delivers them."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.procs import stop
from tests.security.kafka_io import (
    ROOT,
    child_env,
    fill_spool,
    kaizen,
    one_line,
    read_session,
    wait_until_write,
)
from tests.security.pki import CertificateAuthority
from tests.security.secured_kafka import SecuredKafka
from workers.broker.embedded import free_port
from workers.kafka.acls import Grant, kafka_acls_command, topics_of

Env = dict[str, str]


def wrong_password(k: SecuredKafka, user: str, tmp: Path) -> Env:
    wrong = tmp / "wrong.password"
    wrong.write_text("not-the-password\n")
    wrong.chmod(0o600)
    return {**k.env(user), "KAIZEN_SASL_PASSWORD_FILE": str(wrong)}


def untrusted(k: SecuredKafka, user: str, tmp: Path) -> Env:
    other = CertificateAuthority(tmp / "other-ca", "other-ca")
    return {**k.env(user), "KAIZEN_SSL_CAFILE": str(other.path)}


def plaintext_to_tls(k: SecuredKafka, user: str, tmp: Path) -> Env:
    return {"KAIZEN_BROKER": k.sasl_bootstrap, "KAIZEN_PARTITIONS": str(k.partitions)}


def tls_to_plaintext(k: SecuredKafka, user: str, tmp: Path) -> Env:
    return {**k.env(user), "KAIZEN_BROKER": k.plain_bootstrap}


CASES: dict[str, tuple[Callable[[SecuredKafka, str, Path], Env], str]] = {
    "wrong password": (wrong_password, "authentication as '{user}' failed"),
    "untrusted certificate": (untrusted, "is not trusted"),
    "PLAINTEXT to a TLS listener": (plaintext_to_tls, "is a TLS listener"),
    "TLS to a PLAINTEXT listener": (tls_to_plaintext, "does not speak TLS"),
}
# a principal without the ACL the command needs, and the topic it is refused
MISSING_ACL = {
    "replay": ("shipper", "kaizen.replay"),
    "tail": ("replay", "kaizen.events"),
    "ship": ("replay", "kaizen.events"),
    "worker": ("shipper", "kaizen.events"),
}
USER = {"replay": "replay", "tail": "operator", "ship": "shipper", "worker": "worker"}


def run_command(command: str, env: Env, tmp: Path) -> str:
    """The one line the command printed about Kafka (asserting no traceback)."""
    if command == "replay":
        result = kaizen("replay", "some-session", "--timeout", "5", env=env)
    elif command == "tail":
        result = kaizen("tail", "--all", env=env)
    elif command == "worker":
        result = kaizen(
            "worker", "--data-dir", str(tmp / "data"), "--web-port", str(free_port()), env=env
        )
    else:
        spool = tmp / "spool"
        fill_spool(spool, f"err-{uuid.uuid4().hex[:8]}", 3)
        result = kaizen("ship", "--give-up", "1", env={**env, "KAIZEN_SPOOL_DIR": str(spool)})
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
        status = kaizen("ship", "--status", env={**env, "KAIZEN_SPOOL_DIR": str(spool)})
        assert json.loads(status.stdout)["pending"], "the spool must keep undelivered events"
        causes = [line for line in result.stderr.splitlines() if "cannot deliver:" in line]
        assert len(causes) == 1, result.stderr
        return causes[0]
    assert result.returncode == 1, (command, result.stdout, result.stderr)
    return one_line(result.stderr)


@pytest.mark.parametrize("command", ["replay", "tail", "ship", "worker"])
@pytest.mark.parametrize("case", list(CASES))
def test_a_misconfiguration_is_one_line_naming_it(
    secured: SecuredKafka, tmp_path: Path, command: str, case: str
) -> None:
    make_env, expected = CASES[case]
    user = USER[command]
    env = child_env(tmp_path, **make_env(secured, user, tmp_path))
    line = run_command(command, env, tmp_path)
    assert expected.format(user=user) in line, line


@pytest.mark.parametrize("command", list(MISSING_ACL))
def test_a_missing_acl_is_one_line_naming_principal_and_topic(
    secured: SecuredKafka, tmp_path: Path, command: str
) -> None:
    user, topic = MISSING_ACL[command]
    line = run_command(command, child_env(tmp_path, **secured.env(user)), tmp_path)
    assert f"user '{user}' is not authorized for topic {topic} (missing ACL)" in line, line


@pytest.mark.parametrize("topic", topics_of("worker", "Write"))
def test_a_worker_that_may_not_write_a_topic_exits_at_start_naming_topic_and_acl(
    secured: SecuredKafka, tmp_path: Path, topic: str
) -> None:
    """Dead letters, replay answers, summaries: a refused Write would surface only later,
    from inside Faust, so the worker checks them at start."""
    grant = Grant("topic", topic, ("Write",))
    conn = secured.connection("worker")
    with secured.without("worker", grant):
        wait_until_write(conn, topic, allowed=False)
        line = run_command("worker", child_env(tmp_path, **secured.env("worker")), tmp_path)
    wait_until_write(conn, topic, allowed=True)
    assert f"user 'worker' is not authorized to write topic {topic} (missing ACL)" in line, line
    assert line.endswith(kafka_acls_command("worker", grant)), line


def test_the_shipper_keeps_events_until_the_password_is_fixed(
    secured: SecuredKafka, tmp_path: Path
) -> None:
    session = f"fix-{uuid.uuid4().hex[:8]}"
    spool = tmp_path / "spool"
    count = fill_spool(spool, session, 8)
    password = tmp_path / "shipper.password"
    password.write_text("wrong\n")
    password.chmod(0o600)
    env = child_env(
        tmp_path,
        **{
            **secured.env("shipper"),
            "KAIZEN_SASL_PASSWORD_FILE": str(password),
            "KAIZEN_SPOOL_DIR": str(spool),
        },
    )
    log = tmp_path / "ship.log"
    with log.open("ab") as out:
        shipper = subprocess.Popen(
            [sys.executable, "-m", "workers", "ship", "--follow"],
            env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while "authentication as 'shipper' failed" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        admin = secured.connection("admin")
        assert read_session(admin, session, count, timeout=2) == []
        assert json.loads(kaizen("ship", "--status", env=env).stdout)["pending"]
        password.write_text(secured.users.passwords["shipper"] + "\n")  # the fix
        got = read_session(admin, session, count, timeout=60)
        assert sorted(e["seq"] for e in got) == list(range(count))
    finally:
        stop(shipper)
    text = log.read_text()
    assert "Traceback" not in text and "delivering again" in text
    # once per cause, not once per retry (the retry racing the fix may log one more line)
    assert text.count("authentication as 'shipper' failed") == 1, text
    assert "Unable connect" not in text, text  # aiokafka's own lines would repeat the cause
