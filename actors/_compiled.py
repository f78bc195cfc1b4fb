"""Which build of the pure cores runs: the compiled extensions, or the same source as Python.

The matching cores (`CORE_MODULES`) are plain ``.py`` files that the package build compiles
with Cython in pure-Python mode (setup.py). Both builds run the same source, and this module
decides, once per process and before any core module is imported, which one a process gets:

* the extension, when the build compiled it from exactly the ``.py`` that is on disk now (the
  build's manifest, ``actors/core/_compiled.json``, records each source's sha256);
* the ``.py`` otherwise: no compiler or Cython at install time, ``RAYTRADE_PURE_BUILD=1`` at
  install time, ``RAYTRADE_PURE=1`` in the environment now (the runtime opt-out, which is also
  how the tests run the pure build beside the compiled one), or a source edited since its
  extension was built. Python itself would load a stale extension before the edited ``.py``
  (extension modules come first in a directory); an editable install would hide every edit of
  the core until the next rebuild. Here the edit wins, with a warning that says how to rebuild.

`status` tells which build each module runs and why; ``raytrade up`` logs it.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Final

CORE_MODULES: Final = ("actors.core.book", "actors.core.risk", "actors.core.engine")
"""The modules the build compiles, in dependency order (setup.py reads this list)."""

PURE_ENV: Final = "RAYTRADE_PURE"
"""Set to 1 to run the pure-Python core even where a compiled one is installed."""

MANIFEST: Final = "_compiled.json"
_CORE_DIR: Final = Path(__file__).resolve().parent / "core"

log = logging.getLogger("raytrade.build")


def source_sha256(path: Path) -> str:
    """Return the hex sha256 of a file (what the manifest records for each source)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _source(module: str, core_dir: Path = _CORE_DIR) -> Path:
    return core_dir / (module.rsplit(".", 1)[1] + ".py")


def decide(core_dir: Path = _CORE_DIR, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """Return, per core module, "" to load its extension or why its ``.py`` runs instead."""
    if environ.get(PURE_ENV, "") not in ("", "0"):
        return dict.fromkeys(CORE_MODULES, f"{PURE_ENV} is set")
    try:
        manifest = json.loads((core_dir / MANIFEST).read_text())
        compiled: dict[str, dict[str, str]] = manifest["compiled"]
    except FileNotFoundError:
        return dict.fromkeys(CORE_MODULES, "installed without a build (no manifest)")
    except (ValueError, KeyError, TypeError) as error:
        return dict.fromkeys(CORE_MODULES, f"unreadable build manifest ({error})")
    decisions = {}
    for module in CORE_MODULES:
        built = compiled.get(module)
        if built is None:
            if manifest.get("skipped"):
                decisions[module] = f"not compiled: {manifest['skipped']}"
            elif module in manifest.get("failed", ()):
                decisions[module] = "its compile failed at install time"
            else:
                decisions[module] = "not compiled at install time"
        elif built.get("source_sha256") != source_sha256(_source(module, core_dir)):
            decisions[module] = "its .py changed since the extension was built"
            log.warning(
                "%s: %s was edited after its extension was built; running it as pure Python "
                "(rebuild with: pip install -e . , or set %s=1 to silence this)",
                module, _source(module, core_dir), PURE_ENV,
            )
        else:
            decisions[module] = ""
    return decisions


class _PureFinder(importlib.abc.MetaPathFinder):
    """Load the ``.py`` of a core module that must not run compiled; leave the rest alone."""

    def __init__(self, pure: dict[str, str]) -> None:
        self.pure = pure

    def find_spec(
        self, fullname: str, path: object = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if not self.pure.get(fullname):
            return None  # the normal machinery: the extension, where there is one
        return importlib.util.spec_from_file_location(fullname, _source(fullname))


_DECISIONS: Final = decide()
if any(_DECISIONS.values()) and not any(
    isinstance(finder, _PureFinder) for finder in sys.meta_path
):
    sys.meta_path.insert(0, _PureFinder(_DECISIONS))


def status() -> dict[str, str]:
    """Return, per core module, "compiled" or "pure: <why>" (importing the modules)."""
    result = {}
    for module in CORE_MODULES:
        loaded = importlib.import_module(module)
        is_compiled = not str(loaded.__file__).endswith(".py")
        result[module] = "compiled" if is_compiled else f"pure: {_DECISIONS[module] or '?'}"
    return result


def summary() -> str:
    """One line for a log: which build of the core this process runs."""
    states = status()
    if all(state == "compiled" for state in states.values()):
        return "core: compiled (" + ", ".join(m.rsplit(".", 1)[1] for m in states) + ")"
    return "core: " + "; ".join(f"{m.rsplit('.', 1)[1]} {s}" for m, s in states.items())
