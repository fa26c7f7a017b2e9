"""Every C speed-up in the tree is built and loadable (the CI machine has a compiler).

A failed build only warns at install time (the pure-Python path still works), so this is
where a broken C file shows up.  ``KAIZEN_NO_EXTENSIONS=1`` (pure install) skips it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from workers import speedups

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(ROOT.glob("workers/**/_c*.c"))


@pytest.mark.skipif(os.environ.get("KAIZEN_NO_EXTENSIONS") == "1", reason="pure install")
@pytest.mark.parametrize("source", SOURCES, ids=[s.stem for s in SOURCES])
def test_extension_is_built(source: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(speedups.DISABLE_ENV, raising=False)
    name = ".".join(source.relative_to(ROOT).with_suffix("").parts)
    assert speedups.load(name) is not None, f"{name} is not built: run `make dev`"


def test_disable_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(speedups.DISABLE_ENV, "1")
    assert speedups.load("workers.hotlog._cframe") is None


@pytest.mark.skipif(os.environ.get("KAIZEN_NO_EXTENSIONS") == "1", reason="pure install")
@pytest.mark.parametrize("value", ["cframe", "cframe,cdecode", " cdecode , x", "all", "1", "0"])
def test_one_switch_per_speedup(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``KAIZEN_PURE_PYTHON`` names the speed-ups to ignore; 1 or all ignores every one."""
    monkeypatch.setenv(speedups.DISABLE_ENV, value)
    off = {
        "cframe": {"cframe"},
        "cframe,cdecode": {"cframe", "cdecode"},
        " cdecode , x": {"cdecode"},
        "all": set(speedups.NAMES),
        "1": set(speedups.NAMES),
        "0": set(),
    }[value]
    for name, module in speedups.NAMES.items():
        assert (speedups.load(module) is None) == (name in off), name
        assert speedups.disabled(name) == (name in off)
    assert speedups.disabled() == (off == set(speedups.NAMES))


def test_every_c_source_has_a_switch() -> None:
    names = {".".join(s.relative_to(ROOT).with_suffix("").parts) for s in SOURCES}
    assert names == set(speedups.NAMES.values())


@pytest.mark.skipif(os.environ.get("KAIZEN_NO_EXTENSIONS") == "1", reason="pure install")
@pytest.mark.parametrize("module", sorted(speedups.NAMES.values()))
def test_a_stale_build_is_refused(
    module: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A module built from other C text than its source (a merge nobody rebuilt after) must
    not run: C and Python would disagree (it once crashed workers at start)."""
    monkeypatch.delenv(speedups.DISABLE_ENV, raising=False)
    loaded = speedups.load(module)
    assert loaded is not None
    source = speedups.module_source(loaded)
    assert not speedups.stale(loaded)
    changed = tmp_path / source.name
    changed.write_bytes(source.read_bytes() + b"/* changed */\n")
    assert speedups.stale(loaded, changed)
    monkeypatch.setattr(speedups, "module_source", lambda _m: changed)
    assert speedups.load(module) is None
    assert "run `make dev`" in capsys.readouterr().err
