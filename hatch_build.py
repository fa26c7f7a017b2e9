"""Build hook: compile the optional C speed-ups (``workers/**/_c*.c``) with the C compiler.

Each extension is one C file with no dependency beyond CPython's headers; its module sits
beside the pure-Python module it speeds up, which imports it when present and falls back to
Python when not (see docs/DEVELOPING.md, "Speed-ups").  A missing compiler or a failed build
is a warning, never an error: the package then installs pure Python, as on ``python:*-slim``.

* editable installs (``pip install -e .``, what ``make dev`` runs): the shared objects are
  written next to their sources, where the editable path finds them;
* wheels: they are compiled into a temporary directory and added to the wheel, which is then
  tagged for this interpreter and platform.

``KAIZEN_NO_EXTENSIONS=1`` skips the build (pure Python everywhere).
"""

from __future__ import annotations

import hashlib
import os
import shlex
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

ROOT = Path(__file__).resolve().parent
FLAGS = ["-O3", "-fPIC", "-shared", "-Wall", "-Werror=implicit-function-declaration"]


def source_digest(text: bytes) -> str:
    """What a built module says it was compiled from (``SOURCE_DIGEST``); workers/speedups.py
    computes the same of the source beside it and refuses a stale build."""
    return hashlib.sha256(text).hexdigest()[:16]


def _compile(source: Path, target: Path) -> str | None:
    """Compile ``source`` into ``target``; None on success, else what went wrong."""
    cc = shlex.split(sysconfig.get_config_var("CC") or "cc")
    cmd = [
        *cc,
        *FLAGS,
        f'-DKAIZEN_SOURCE_DIGEST="{source_digest(source.read_bytes())}"',
        f"-I{sysconfig.get_paths()['include']}",
        str(source),
        "-o",
        str(target),
    ]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{cmd[0]}: {exc}"
    if done.returncode != 0:
        return done.stderr.strip() or f"{cmd[0]} exited {done.returncode}"
    return None


class SpeedupsBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or os.environ.get("KAIZEN_NO_EXTENSIONS") == "1":
            return
        suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
        editable = version == "editable"
        out_dir = ROOT if editable else Path(tempfile.mkdtemp(prefix="kaizen-ext-"))
        built = 0
        for source in sorted(ROOT.glob("workers/**/_c*.c")):
            rel = source.relative_to(ROOT).with_suffix("")
            target = (out_dir / rel).with_name(rel.name + suffix)
            target.parent.mkdir(parents=True, exist_ok=True)
            error = _compile(source, target)
            if error is not None:
                print(
                    f"kaizen-stream: C speed-up {rel} not built, pure Python is used:\n{error}",
                    file=sys.stderr,
                )
                continue
            built += 1
            if not editable:
                build_data["force_include"][str(target)] = str(target.relative_to(out_dir))
        if built and not editable:
            build_data["pure_python"] = False
            build_data["infer_tag"] = True
