"""Loading the optional C speed-ups, with the pure-Python modules as the fallback.

A speed-up is a C module ``_c<name>`` beside the Python module it speeds up (built by
``hatch_build.py`` at install time).  It implements a few functions of that module with
exactly the same signatures and results; the Python module binds the C versions when
:func:`load` finds them, so callers never know which one runs.  The tests run both.

``KAIZEN_PURE_PYTHON=1`` ignores every speed-up (to compare, or to rule one out).
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

DISABLE_ENV = "KAIZEN_PURE_PYTHON"


def disabled() -> bool:
    return os.environ.get(DISABLE_ENV, "") not in ("", "0")


def load(module: str) -> ModuleType | None:
    """The C module ``module`` (dotted name), or None when it is not built or disabled."""
    if disabled():
        return None
    try:
        return importlib.import_module(module)
    except ImportError:
        return None
