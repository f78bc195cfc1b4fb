"""The compiled core and its pure-Python twin: which one runs, and that both pass the same tests.

The build compiles the matching cores with Cython (setup.py); `actors._compiled` decides per
process whether the extension or the ``.py`` runs. These tests prove that an install on this
machine (a C compiler is present) runs the compiled modules, that the pure build passes the
core's golden, property and replay tests too, and that an extension is never used for a
source that was edited after it was built.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import actors._compiled as compiled

ROOT = Path(__file__).resolve().parents[2]
CORE_TESTS = [
    "tests/unit/test_matching_rules.py",  # the golden scenarios
    "tests/unit/test_matching_properties.py",  # invariants, differential against the reference
    "tests/unit/test_snapshots.py",
    "tests/unit/test_shard_core.py",  # replay
    "tests/unit/test_book_actor_recovery.py",
    "tests/unit/test_client_order_ids.py",
    "tests/unit/test_risk.py",
    "tests/unit/test_positions.py",
    "tests/unit/test_compiled_core.py",  # the build check below, in the other build
]


def _forced_pure() -> bool:
    return os.environ.get(compiled.PURE_ENV, "") not in ("", "0")


def _pure_build_chosen() -> str:
    """Return why the install is pure on purpose (RAYTRADE_PURE_BUILD), or ""."""
    manifest = json.loads((ROOT / "actors" / "core" / compiled.MANIFEST).read_text())
    skipped: str = manifest.get("skipped", "")
    return skipped if "RAYTRADE_PURE_BUILD" in skipped else ""


def test_this_process_runs_the_build_it_should() -> None:
    """Compiled wherever the install compiled it; pure only when asked for."""
    status = compiled.status()
    if _forced_pure():
        assert all(state.startswith("pure: RAYTRADE_PURE") for state in status.values()), status
        for module in compiled.CORE_MODULES:
            assert str(sys.modules[module].__file__).endswith(".py")
            assert sys.modules[module].COMPILED is False
        return
    if _pure_build_chosen():
        pytest.skip(f"installed as pure Python on purpose: {_pure_build_chosen()}")
    # a compiler is present wherever these tests run: a pure module here is a failed build
    assert status == dict.fromkeys(compiled.CORE_MODULES, "compiled"), status
    for module in compiled.CORE_MODULES:
        loaded = sys.modules[module]
        assert loaded.__file__ is not None and loaded.__file__.endswith(".so"), loaded.__file__
        assert loaded.COMPILED is True


@pytest.mark.slow
def test_the_pure_build_passes_the_core_tests() -> None:
    """The same source, interpreted: the core's tests pass in a process forced to pure (in CI
    with 300 examples per property instead of 1000: the ``ci-pure`` profile)."""
    if _forced_pure():
        pytest.skip("this run is the pure one")
    env = {**os.environ, compiled.PURE_ENV: "1"}
    if env.get("HYPOTHESIS_PROFILE") == "ci":
        env["HYPOTHESIS_PROFILE"] = "ci-pure"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *CORE_TESTS],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and " failed" not in result.stdout, result.stdout[-2000:]


def _copy_package(tmp_path: Path) -> Path:
    """Copy actors/ and protocols/ (extensions and manifest included) into ``tmp_path``."""
    for package in ("actors", "protocols"):
        shutil.copytree(ROOT / package, tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__", "*.c"))
    return tmp_path


def _import_in(root: Path, code: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {key: value for key, value in os.environ.items() if key != compiled.PURE_ENV}
    environ.update(env, PYTHONPATH=str(root))
    return subprocess.run([sys.executable, "-c", code], cwd=root, env=environ,
                          capture_output=True, text=True, timeout=60, check=False)


WHICH = (
    "import actors.core.book as b, actors.core.engine as e, actors._compiled as c;"
    "print(b.__file__); print(e.__file__); print(c.summary())"
)


def test_an_edited_source_is_never_hidden_by_its_old_extension(tmp_path: Path) -> None:
    """Edit book.py after the build (as in an editable install): the edit runs, with a warning."""
    if _forced_pure() or _pure_build_chosen():
        pytest.skip("needs the compiled install")
    root = _copy_package(tmp_path)
    before = _import_in(root, WHICH)
    assert before.returncode == 0, before.stderr
    assert before.stdout.splitlines()[0].endswith(".so"), before.stdout
    book = root / "actors" / "core" / "book.py"
    book.write_text(book.read_text() + "\nEDITED_AFTER_BUILD = True\n")
    after = _import_in(root, WHICH + ";print(b.EDITED_AFTER_BUILD)")
    assert after.returncode == 0, after.stderr
    lines = after.stdout.splitlines()
    assert lines[0] == str(book), lines  # the edited .py, not the stale extension
    assert lines[1].endswith(".so"), lines  # the untouched engine stays compiled
    assert "book pure: its .py changed since the extension was built" in lines[2]
    assert lines[3] == "True"
    assert "was edited after its extension was built" in after.stderr
    assert "pip install -e ." in after.stderr


def test_the_runtime_opt_out_and_a_missing_manifest_run_the_source(tmp_path: Path) -> None:
    root = _copy_package(tmp_path)
    forced = _import_in(root, WHICH, RAYTRADE_PURE="1")
    assert forced.returncode == 0, forced.stderr
    assert all(line.endswith(".py") for line in forced.stdout.splitlines()[:2]), forced.stdout
    assert "RAYTRADE_PURE is set" in forced.stdout
    (root / "actors" / "core" / compiled.MANIFEST).unlink(missing_ok=True)
    unbuilt = _import_in(root, WHICH)
    assert unbuilt.returncode == 0, unbuilt.stderr
    assert all(line.endswith(".py") for line in unbuilt.stdout.splitlines()[:2]), unbuilt.stdout
    assert "no manifest" in unbuilt.stdout


@pytest.mark.parametrize(
    ("manifest", "reason"),
    [
        ({"compiled": {}, "failed": [], "skipped": "RAYTRADE_PURE_BUILD is set"},
         "not compiled: RAYTRADE_PURE_BUILD is set"),
        ({"compiled": {}, "failed": list(compiled.CORE_MODULES), "skipped": ""},
         "its compile failed at install time"),
        ("not json", "unreadable build manifest"),
    ],
)
def test_decisions_from_the_manifest(tmp_path: Path, manifest: object, reason: str) -> None:
    for module in compiled.CORE_MODULES:
        (tmp_path / (module.rsplit(".", 1)[1] + ".py")).write_text("X = 1\n")
    text = manifest if isinstance(manifest, str) else json.dumps(manifest)
    (tmp_path / compiled.MANIFEST).write_text(text)
    decisions = compiled.decide(tmp_path, environ={})
    assert set(decisions) == set(compiled.CORE_MODULES)
    assert all(decision.startswith(reason) for decision in decisions.values()), decisions


def test_a_matching_hash_loads_the_extension(tmp_path: Path) -> None:
    sources = {}
    for module in compiled.CORE_MODULES:
        path = tmp_path / (module.rsplit(".", 1)[1] + ".py")
        path.write_text(f"NAME = {module!r}\n")
        sources[module] = {"source_sha256": compiled.source_sha256(path)}
    (tmp_path / compiled.MANIFEST).write_text(
        json.dumps({"compiled": sources, "failed": [], "skipped": ""}))
    assert compiled.decide(tmp_path, environ={}) == dict.fromkeys(compiled.CORE_MODULES, "")
    assert all(compiled.decide(tmp_path, environ={"RAYTRADE_PURE": "1"}).values())
    assert compiled.decide(tmp_path, environ={"RAYTRADE_PURE": "0"}) == dict.fromkeys(
        compiled.CORE_MODULES, "")
