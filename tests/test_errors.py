"""One exception tree: every public exception class in workers/ derives from KaizenError."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import workers
from workers.errors import KaizenError


def test_every_public_exception_is_a_kaizen_error() -> None:
    found = []
    for info in pkgutil.walk_packages(workers.__path__, "workers."):
        if info.name.rsplit(".", 1)[-1].startswith("_"):
            continue  # private modules and the C speed-ups
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if (
                inspect.isclass(obj)
                and issubclass(obj, BaseException)
                and obj.__module__ == info.name
                and not name.startswith("_")
            ):
                found.append(obj)
    assert found, "no exception classes found: the walk is broken"
    strays = [f"{c.__module__}.{c.__qualname__}" for c in found if not issubclass(c, KaizenError)]
    assert strays == []


def test_package_classes_sit_directly_under_the_base() -> None:
    from workers.errors import HotLogError, ReplayError, StateError
    from workers.hotlog import CorruptFrame, LogClosed, LogLocked
    from workers.replay.client import ReplyTimeout
    from workers.state import BatchClosed, FormatMismatch

    assert all(issubclass(c, HotLogError) for c in (CorruptFrame, LogClosed, LogLocked))
    assert all(issubclass(c, StateError) for c in (BatchClosed, FormatMismatch))
    assert issubclass(ReplyTimeout, ReplayError) and issubclass(ReplyTimeout, TimeoutError)
