"""HTTP views of the team-wide session summaries (from ``kaizen.sessions``).

    GET /team/sessions   every worker's sessions; ?agent= &model= &workspace= &host=
                         &since= &sort=last|cost|tokens|duration|failures &limit=
    GET /team/stats      totals; ?by=model|agent|workspace|host|day &since=

Unlike GET /sessions (the partitions this worker owns), these answer for the
whole team: they read the compacted topic every worker publishes its
summaries to (workers/analytics/team.py), so any worker gives the same answer.
Cost is priced when read. Same bearer-token rule as the other views.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import faust
from faust import web

from workers.analytics import views
from workers.analytics.prices import PriceBook, PricesFileError
from workers.analytics.team import read_team
from workers.replay.timespec import parse_time_ms
from workers.web.views import MAX_LIMIT, TOKEN_ENV, authorized


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


def register_team_views(app: faust.App, bootstrap: str) -> None:
    token = os.environ.get(TOKEN_ENV) or None

    class _Base(web.View):
        def denied(self, request: web.Request) -> web.Response | None:
            if authorized(request.headers, token):
                return None
            return self.json({"error": "missing or wrong bearer token"}, status=401)

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
                if keep["since_ms"] is None or (s.last_ts or 0) >= keep["since_ms"]
            ]
            groups = views.totals_by(summaries, by, book)
            return self.json({"by": by, "groups": {g: t.to_json() for g, t in groups.items()}})

    app.page("/team/sessions", name="kaizen-team-sessions")(TeamSessions)
    app.page("/team/stats", name="kaizen-team-stats")(TeamStats)
