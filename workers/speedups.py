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

A stale build is never used: each module carries ``SOURCE_DIGEST``, the digest of the C
text it was compiled from (``hatch_build.py``).  Where its source sits beside it (an
editable install, a checkout) and says otherwise (the source changed by a merge, a pull, a
branch switch, and nobody ran ``make dev``), :func:`load` warns once, naming the fix, and
returns None: the pure-Python reference runs, never C that disagrees with the Python
around it.  A wheel carries no sources, so it is taken as built.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import sys
from pathlib import Path
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
        loaded = importlib.import_module(module)
    except ImportError:
        return None
    if stale(loaded):
        print(
            f"kaizen-stream: {module} was built from an older {module_source(loaded).name}; "
            "pure Python runs instead: run `make dev` to rebuild it",
            file=sys.stderr,
        )
        return None
    return loaded


def module_source(loaded: ModuleType) -> Path:
    """The C source a speed-up module is built from, beside it (``_cname.c``)."""
    return Path(loaded.__file__ or "").with_name(loaded.__name__.rsplit(".", 1)[-1] + ".c")


def stale(loaded: ModuleType, source: Path | None = None) -> bool:
    """True when the C source beside the module is not the text it was built from."""
    try:
        text = (source or module_source(loaded)).read_bytes()
    except OSError:
        return False  # no source here (an installed wheel): the build is what there is
    # hatch_build.source_digest, which is outside the package
    return getattr(loaded, "SOURCE_DIGEST", "") != hashlib.sha256(text).hexdigest()[:16]
