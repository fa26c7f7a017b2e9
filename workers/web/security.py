"""HTTP access to the worker: the bearer token check and the web server's TLS.

Invariants: the token is compared in constant time (hmac.compare_digest), so
the time to refuse a guess says nothing about how much of it was right; with
KAIZEN_METRICS_REQUIRE_TOKEN /metrics wants the token too; with
KAIZEN_WEB_CERTFILE and KAIZEN_WEB_KEYFILE the server speaks HTTPS only.
"""

from __future__ import annotations

import hmac
import ssl
from collections.abc import Mapping
from typing import Any

from faust import web

from workers.settings import SettingsError, WebSettings


def authorized(headers: Mapping[str, str], token: str | None) -> bool:
    """True when no token is configured, or the request carries it as a bearer token."""
    if not token:
        return True
    given = headers.get("Authorization") or headers.get("authorization") or ""
    scheme, _, value = given.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(value.strip().encode(), token.encode())


def unauthorized(view: web.View) -> web.Response:
    return view.json(
        {"error": "missing or wrong bearer token"},
        status=401,
        headers={"WWW-Authenticate": "Bearer"},
    )


def faust_web_settings(settings: WebSettings) -> dict[str, Any]:
    """faust.App settings for the web server: an SSL context when a certificate is set."""
    if not settings.certfile:
        return {}
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(settings.certfile, settings.keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise SettingsError(
            f"cannot load KAIZEN_WEB_CERTFILE/KAIZEN_WEB_KEYFILE ({settings.certfile}): {exc}"
        ) from None
    return {"web_ssl_context": context}
