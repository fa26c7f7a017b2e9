"""A real worker (the project's Faust app) with its own consumer-group id, for replay tests.

    python -m tests.replay.worker_main GROUP_ID WEB_PORT

Same app as `kaizen-stream worker` (`workers.app.create_app`); only the group id
and a short session timeout differ, so a test worker never shares its group with
workers of other test modules on the same broker.
"""

from __future__ import annotations

import sys

import faust

from workers.app import create_app
from workers.settings import Settings


def main() -> int:
    group, port = sys.argv[1], int(sys.argv[2])
    settings = Settings.from_env()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = create_app(
        settings,
        id=group,
        web_port=port,
        broker_session_timeout=6.0,
        broker_heartbeat_interval=1.0,
    )
    worker = faust.Worker(app, loglevel="info", quiet=True, workdir=str(settings.data_dir))
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
