"""HTTP views of the team-wide session summaries (from ``kaizen.sessions``).

    GET /team/sessions   every worker's sessions; ?agent= &model= &workspace= &host=
                         &since= &sort=last|cost|tokens|duration|failures &limit=
    GET /team/stats      totals; ?by=model|agent|workspace|host|day &since=
    GET /team/charts     cost per UTC day and model, failure rate per tool
    GET /team/timeline/{id}  a session's events, tool calls paired with results (the
                         worker that owns the session answers; others 404)
    GET /                the page (workers/web/page/: sessions, timeline, charts;
                         plain DOM and SVG, shipped with the package, no CDN)

Unlike GET /sessions (the partitions this worker owns), these answer for the
whole team: they read the compacted topic every worker publishes its
summaries to (workers/analytics/team.py), so any worker gives the same answer.
Cost is priced when read. Same bearer-token rule as the other views.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import faust
from faust import web

from workers.analytics import views
from workers.analytics.prices import PriceBook, PricesFileError
from workers.analytics.team import read_team
from workers.codec.event import decode_event
from workers.kafka.clients import Target
from workers.replay.interfaces import ManagerLike
from workers.replay.timespec import parse_time_ms
from workers.web.security import authorized, unauthorized
from workers.web.views import MAX_LIMIT, TOKEN_ENV


def _query(query: Mapping[str, str]) -> tuple[dict[str, Any], PriceBook]:
    since = parse_time_ms(query["since"]) if query.get("since") else None
    try:
        book = PriceBook.from_env()
    except PricesFileError as exc:
        raise ValueError(str(exc)) from None
    keep = {
        "agent": query.get("agent") or None,
        "model": query.get("model") or None,
        "workspace": query.get("workspace") or None,
        "host": query.get("host") or None,
        "since_ms": since,
    }
    return keep, book


PAGE_DIR = Path(__file__).resolve().parent / "page"
ASSETS = {"app.js": "application/javascript", "app.css": "text/css"}


def register_team_views(app: faust.App, bootstrap: Target, manager: ManagerLike) -> None:
    token = os.environ.get(TOKEN_ENV) or None

    class _Base(web.View):
        def denied(self, request: web.Request) -> web.Response | None:
            if authorized(request.headers, token):
                return None
            return unauthorized(self)

    class TeamSessions(_Base):
        async def get(self, request: web.Request) -> web.Response:
            if (denied := self.denied(request)) is not None:
                return denied
            q = dict(request.query)
            try:
                keep, book = _query(q)
                sort = q.get("sort") or "last"
                if sort not in views.SORT_KEYS:
                    raise ValueError(f"sort must be one of {', '.join(views.SORT_KEYS)}")
                limit = min(int(q.get("limit") or MAX_LIMIT), MAX_LIMIT)
            except ValueError as exc:
                return self.json({"error": str(exc)}, status=400)
            summaries = await read_team(bootstrap)
            rows = [
                r for r in (views.row(s, book) for s in summaries.values()) if views.keep(r, **keep)
            ]
            rows = views.sort_rows(rows, sort)
            return self.json(
                {
                    "count": min(len(rows), limit),
                    "truncated": len(rows) > limit,
                    "sessions": [r.to_json() for r in rows[:limit]],
                }
            )

    class TeamStats(_Base):
        async def get(self, request: web.Request) -> web.Response:
            if (denied := self.denied(request)) is not None:
                return denied
            q = dict(request.query)
            by = q.get("by") or "model"
            try:
                keep, book = _query(q)
                if by not in views.GROUP_KEYS:
                    raise ValueError(f"by must be one of {', '.join(views.GROUP_KEYS)}")
            except ValueError as exc:
                return self.json({"error": str(exc)}, status=400)
            summaries = [
                s
                for s in (await read_team(bootstrap)).values()
                if keep["since_ms"] is None or views.active_since(s.last_ts, keep["since_ms"])
            ]
            groups = views.totals_by(summaries, by, book)
            return self.json({"by": by, "groups": {g: t.to_json() for g, t in groups.items()}})

    class TeamCharts(_Base):
        async def get(self, request: web.Request) -> web.Response:
            if (denied := self.denied(request)) is not None:
                return denied
            try:
                book = PriceBook.from_env()
            except PricesFileError as exc:
                return self.json({"error": str(exc)}, status=400)
            summaries = list((await read_team(bootstrap)).values())
            return self.json(
                {
                    "cost_by_day_model": views.cost_by_day_and_model(summaries, book),
                    "tool_failures": views.tool_failure_rates(summaries),
                }
            )

    class Timeline(_Base):
        async def get(self, request: web.Request, session_id: str) -> web.Response:
            if (denied := self.denied(request)) is not None:
                return denied
            state = manager.get(manager.partition_for(session_id))
            if state is None:
                return self.json({"error": "owned by another worker"}, status=404)

            def read() -> list[dict[str, Any]]:
                return [decode_event(data) for _, data in state.read_session(session_id)]

            events = await asyncio.get_running_loop().run_in_executor(None, read)
            if not events:
                return self.json({"error": "no such session"}, status=404)
            return self.json({"session_id": session_id, "items": views.timeline(events)})

    class Page(web.View):
        async def get(self, request: web.Request) -> web.Response:
            return self.html((PAGE_DIR / "index.html").read_text(encoding="utf-8"))

    class Asset(web.View):
        async def get(self, request: web.Request, name: str) -> web.Response:
            if name not in ASSETS:  # a fixed list: no path from the request reaches the disk
                return self.json({"error": "no such asset"}, status=404)
            text = (PAGE_DIR / name).read_text(encoding="utf-8")
            return self.text(text, content_type=ASSETS[name])

    app.page("/team/sessions", name="kaizen-team-sessions")(TeamSessions)
    app.page("/team/stats", name="kaizen-team-stats")(TeamStats)
    app.page("/team/charts", name="kaizen-team-charts")(TeamCharts)
    app.page("/team/timeline/{session_id}", name="kaizen-team-timeline")(Timeline)
    app.page("/", name="kaizen-page")(Page)
    app.page("/assets/{name}", name="kaizen-assets")(Asset)
