"""HTTP views on the Faust web server: sessions and replay.

    GET  /sessions                 owned sessions; ?agent= &model= &since= &until= &limit=
    GET  /sessions/{id}            the session's offset-table entry (404 when unknown)
    POST /sessions/{id}/replay     ask for a replay; 202 {"request_id", "target_topic", ...}

Invariants:

* a worker only knows the partitions it owns: /sessions says which ones in
  `"partitions"` and sets `"complete": false` when it does not own them all
  (ask every worker and merge, or use the replay topic, for a global view);
  /sessions/{id} of a session in a partition owned elsewhere answers 404 with
  `"owner": "elsewhere"` and the partition;
* POST .../replay never replays inline: it produces the request to
  kaizen.replay.requests keyed by session id, so the owner answers it, on
  whichever worker that is;
* when `KAIZEN_API_TOKEN` is set, every view here wants `Authorization:
  Bearer <token>` (compared in constant time) and answers 401 otherwise.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping
from typing import Any

import faust
from faust import web

from workers.codec.errors import DecodeError
from workers.replay import formats
from workers.replay.interfaces import ManagerLike
from workers.replay.service import ReplayService, now_ms
from workers.replay.timespec import parse_time_ms
from workers.settings import REPLAY_TOPIC
from workers.web.security import authorized, unauthorized

TOKEN_ENV = "KAIZEN_API_TOKEN"
MAX_LIMIT = 10_000


def _int_or_none(value: Any, name: str) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{name} must be a whole number")
    return int(value)


def session_matches(
    info: Any,
    agent: str | None,
    model: str | None,
    since_ms: int | None,
    until_ms: int | None,
) -> bool:
    """Filter for /sessions: agent and model exact; time range overlaps [first_ts, last_ts]."""
    if agent and info.agent != agent:
        return False
    if model and info.model != model:
        return False
    if since_ms is not None and info.last_ts_ms < since_ms:
        return False
    return not (until_ms is not None and info.first_ts_ms > until_ms)


def list_sessions(
    manager: ManagerLike, query: Mapping[str, str], total_partitions: int | None
) -> dict[str, Any]:
    """The /sessions body (blocking: reads the stores; run it in an executor)."""
    agent = query.get("agent") or None
    model = query.get("model") or None
    since = parse_time_ms(query["since"]) if query.get("since") else None
    until = parse_time_ms(query["until"]) if query.get("until") else None
    limit = min(int(query.get("limit") or MAX_LIMIT), MAX_LIMIT)
    owned = sorted(manager.owned())
    matches: list[Any] = []
    for partition in owned:
        state = manager.get(partition)
        if state is None:
            continue
        matches.extend(
            info
            for info in state.store.sessions()
            if session_matches(info, agent, model, since, until)
        )
    matches.sort(key=lambda info: (-info.last_ts_ms, info.session_id))  # most recent first
    truncated = len(matches) > limit
    sessions = [info.to_json() for info in matches[:limit]]
    complete = total_partitions is not None and len(owned) >= total_partitions
    return {
        "partitions": owned,
        "complete": complete,
        "note": "" if complete else "only sessions in the partitions this worker owns",
        "count": len(sessions),
        "truncated": truncated,
        "sessions": sessions,
    }


def register_views(app: faust.App, manager: ManagerLike, service: ReplayService) -> None:
    token = os.environ.get(TOKEN_ENV) or None
    total_partitions: int | None = app.conf.topic_partitions

    class _Base(web.View):
        def denied(self, request: web.Request) -> web.Response | None:
            if authorized(request.headers, token):
                return None
            return unauthorized(self)

    class SessionList(_Base):
        async def get(self, request: web.Request) -> web.Response:
            if (denied := self.denied(request)) is not None:
                return denied
            loop = asyncio.get_running_loop()
            query = dict(request.query)
            try:
                body = await loop.run_in_executor(
                    None, list_sessions, manager, query, total_partitions
                )
            except ValueError as exc:
                return self.json({"error": str(exc)}, status=400)
            return self.json(body)

    class SessionDetail(_Base):
        async def get(self, request: web.Request, session_id: str) -> web.Response:
            if (denied := self.denied(request)) is not None:
                return denied
            partition = manager.partition_for(session_id)
            state = manager.get(partition)
            if state is None:
                return self.json(
                    {
                        "error": "session's partition is owned by another worker",
                        "owner": "elsewhere",
                        "partition": partition,
                        "partitions": sorted(manager.owned()),
                    },
                    status=404,
                )
            info = state.store.session(session_id)
            if info is None:
                return self.json({"error": "no such session", "partition": partition}, status=404)
            body: dict[str, object] = info.to_json()
            return self.json(body)

    class SessionReplay(_Base):
        async def post(self, request: web.Request, session_id: str) -> web.Response:
            if (denied := self.denied(request)) is not None:
                return denied
            try:
                raw = await request.read()
                options = json.loads(raw) if raw.strip() else {}
                if not isinstance(options, dict):
                    raise ValueError("body must be a JSON object")
                replay = formats.ReplayRequest(
                    request_id=formats.new_request_id(),
                    session_id=session_id,
                    from_seq=_int_or_none(options.get("from_seq"), "from_seq"),
                    to_seq=_int_or_none(options.get("to_seq"), "to_seq"),
                    from_ts_ms=(
                        parse_time_ms(str(options["since"])) if options.get("since") else None
                    ),
                    to_ts_ms=(
                        parse_time_ms(str(options["until"])) if options.get("until") else None
                    ),
                    target_topic=str(options.get("target_topic") or REPLAY_TOPIC),
                    pacing=str(options.get("pacing") or formats.PACING_FAST),
                    speed=float(options.get("speed", 1.0)),
                    requested_ts_ms=now_ms(),
                )
                replay.validate(service.target_prefix)
            except (ValueError, TypeError, DecodeError) as exc:
                return self.json({"error": str(exc)}, status=400)
            await service.submit(replay)
            return self.json(
                {
                    "request_id": replay.request_id,
                    "session_id": session_id,
                    "target_topic": replay.target_topic,
                    "partition": manager.partition_for(session_id),
                },
                status=202,
            )

    app.page("/sessions", name="kaizen-sessions")(SessionList)
    app.page("/sessions/{session_id}", name="kaizen-session")(SessionDetail)
    app.page("/sessions/{session_id}/replay", name="kaizen-session-replay")(SessionReplay)
