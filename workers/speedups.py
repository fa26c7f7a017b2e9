"""Loading the optional C speed-ups, with the pure-Python modules as the fallback.

A speed-up is a C module ``_c<name>`` beside the Python module it speeds up (built by
``hatch_build.py`` at install time).  It implements a few functions of that module with
exactly the same signatures and results; the Python module binds the C versions when
:func:`load` finds them, so callers never know which one runs.  The tests run both.

One switch per speed-up, so that a benchmark can show each one's share:
``KAIZEN_PURE_PYTHON=1`` (or ``all``) ignores every speed-up; a comma-separated list of
names ignores those only, e.g. ``KAIZEN_PURE_PYTHON=cframe`` or ``=cframe,cdecode`` (the
name is the C module's without its leading underscore: `NAMES`; other names are
ignored).  Read at import of the
module that loads the speed-up: set it before the process starts.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

DISABLE_ENV = "KAIZEN_PURE_PYTHON"
#: the speed-ups there are, by switch name -> module
NAMES = {"cframe": "workers.hotlog._cframe", "cdecode": "workers.codec._cdecode"}
_ALL = ("1", "all")


def _switch() -> set[str]:
    raw = os.environ.get(DISABLE_ENV, "").strip()
    if raw in ("", "0"):
        return set()
    if raw in _ALL:
        return set(NAMES)
    return {name.strip() for name in raw.split(",") if name.strip()}


def disabled(name: str | None = None) -> bool:
    """True when speed-up `name` (a key of `NAMES`) is switched off; without a name, when
    every speed-up is."""
    off = _switch()
    return name in off if name is not None else off >= set(NAMES)


def load(module: str) -> ModuleType | None:
    """The C module ``module`` (dotted name), or None when it is not built or disabled."""
    name = module.rsplit(".", 1)[-1].lstrip("_")
    if disabled(name):
        return None
    try:
        return importlib.import_module(module)
    except ImportError:
        return None
