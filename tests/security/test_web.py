"""The worker's HTTP server: HTTPS with a certificate, and /metrics behind the token."""

from __future__ import annotations

import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.brokers import Broker
from tests.procs import stop
from tests.replay.conftest import kaizen_env
from tests.security.kafka_io import ROOT
from tests.security.pki import CertificateAuthority
from workers.broker.embedded import free_port
from workers.settings import Settings, SettingsError
from workers.web.security import authorized

TOKEN = "metrics-token-123"


def test_web_settings_are_checked(tmp_path: Path) -> None:
    cert = tmp_path / "c.pem"
    cert.write_text("x")
    with pytest.raises(SettingsError, match="go together"):
        Settings.from_env({"KAIZEN_WEB_CERTFILE": str(cert)})
    with pytest.raises(SettingsError, match="needs KAIZEN_API_TOKEN"):
        Settings.from_env({"KAIZEN_METRICS_REQUIRE_TOKEN": "true"})
    web = Settings.from_env({"KAIZEN_METRICS_REQUIRE_TOKEN": "1", "KAIZEN_API_TOKEN": "t"}).web
    assert web.metrics_token and web.token == "t"


def test_the_token_check_is_constant_time_by_construction() -> None:
    """hmac.compare_digest: a guess sharing a prefix with the token is refused like any other."""
    import inspect

    import workers.web.security as security

    assert "hmac.compare_digest" in inspect.getsource(security.authorized)
    assert not authorized({"Authorization": f"Bearer {TOKEN[:-1]}"}, TOKEN)
    assert authorized({"Authorization": f"Bearer {TOKEN}"}, TOKEN)


def _get(url: str, context: ssl.SSLContext | None, token: str | None = None) -> int:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, context=context, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_https_and_a_token_on_metrics(broker: Broker, tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path / "pki")
    server = ca.issue("worker-web", server=True)
    port = free_port()
    env = {
        **kaizen_env(broker, tmp_path / "data"),
        "KAIZEN_API_TOKEN": TOKEN,
        "KAIZEN_METRICS_REQUIRE_TOKEN": "true",
        "KAIZEN_WEB_CERTFILE": str(server.cert),
        "KAIZEN_WEB_KEYFILE": str(server.key),
    }
    log = tmp_path / "worker.log"
    with log.open("ab") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "tests.replay.worker_main", "web-tls", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
        )  # fmt: skip
    context = ssl.create_default_context(cafile=str(ca.path))
    url = f"https://127.0.0.1:{port}/metrics"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                status = _get(url, context, TOKEN)
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                assert worker.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.5)
        assert status == 200
        assert _get(url, context) == 401
        assert _get(url, context, "wrong") == 401
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            _get(f"http://127.0.0.1:{port}/metrics", None, TOKEN)  # HTTPS only
    finally:
        stop(worker)
