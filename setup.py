"""Build the compiled core: the pure matching cores compiled by Cython in pure-Python mode.

Everything else about the package is in pyproject.toml; this file only adds the optional
extensions (setuptools has no declarative form for them). The modules stay ``.py`` files that
run as they are; the build compiles the same source to C where it can:

* ``RAYTRADE_PURE_BUILD=1`` at install time builds no extension (the pure-Python install);
* a missing compiler or Cython, or a failing compile, is no error: the extension is optional,
  the build says so and the install runs the pure modules;
* the build writes ``actors/core/_compiled.json`` beside the extensions: which modules it
  compiled, from which source (sha256), or why it compiled none. `actors.core._loader` reads it
  at import, so an extension whose ``.py`` was edited after the build (an editable install that
  was not rebuilt) is never loaded in place of the edited source.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


def _choice_module():  # actors/_compiled.py, read without importing the package
    path = ROOT / "actors" / "_compiled.py"
    spec = importlib.util.spec_from_file_location("_raytrade_compiled", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_CHOICE = _choice_module()
COMPILED = _CHOICE.CORE_MODULES
MANIFEST = _CHOICE.MANIFEST


def _source(module: str) -> Path:
    return ROOT.joinpath(*module.split(".")).with_suffix(".py")


class BuildCore(build_ext):
    """Build the optional extensions, then record what was built (the manifest)."""

    def run(self) -> None:
        self._built: list[str] = []
        self._failed: list[str] = []
        super().run()
        self._write_manifest()

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as error:  # optional: a failed compile leaves the pure module
            print(f"raytrade: could not compile {ext.name} ({error}); it runs as pure Python",
                  file=sys.stderr)
            self._failed.append(ext.name)
        else:
            self._built.append(ext.name)

    def _write_manifest(self) -> None:
        modules = {
            name: {"source_sha256": _CHOICE.source_sha256(_source(name))} for name in self._built
        }
        manifest = {"compiled": modules, "failed": self._failed, "skipped": ""}
        _write(Path(self.get_ext_fullpath(COMPILED[0])).parent, manifest)


def _write(directory: Path, manifest: dict[str, object]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def _extensions() -> tuple[list[Extension], str]:
    """Return the extensions to build, or none and the reason."""
    if os.environ.get("RAYTRADE_PURE_BUILD", "") not in ("", "0"):
        return [], "RAYTRADE_PURE_BUILD is set"
    try:
        from Cython.Build import cythonize
    except ImportError:
        return [], "Cython is not installed in the build environment"
    extensions = []
    for name in COMPILED:
        try:
            extensions += cythonize(
                [Extension(name, [str(_source(name).relative_to(ROOT))])],
                compiler_directives={"language_level": "3"},
                quiet=True,
            )
        except Exception as error:  # a Cython error is a pure module, not a failed install
            print(f"raytrade: Cython could not translate {name} ({error}); it runs as pure "
                  f"Python", file=sys.stderr)
    for extension in extensions:
        extension.optional = True  # cythonize drops it (../shared/RAY_NOTES.md)
    return extensions, ""


extensions, skipped = _extensions()
if skipped:
    print(f"raytrade: building the pure-Python core: {skipped}", file=sys.stderr)
    # an earlier build's extensions must not outlive this pure build: the manifest says none
    _write(ROOT / "actors" / "core", {"compiled": {}, "failed": [], "skipped": skipped})
setup(ext_modules=extensions, cmdclass={"build_ext": BuildCore})
