"""pyproject's dependencies match the third-party imports of liverview/ (runtime) and training/ (the training extra)."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIRST_PARTY = {"liverview", "training"}
# Declared for liverview/ without an import of their own: pydicom finds these decoders itself.
PYDICOM_PLUGINS = {"pylibjpeg", "pylibjpeg-openjpeg", "pylibjpeg-rle", "python-gdcm"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(req: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req)
    assert match, f"unreadable requirement {req!r}"
    return _norm(match.group(1))


def _project() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as fh:
        return tomllib.load(fh)["project"]


def _declared(*extras: str) -> set[str]:
    project = _project()
    reqs = list(project["dependencies"])
    for extra in extras:
        reqs += project["optional-dependencies"][extra]
    return {_requirement_name(r) for r in reqs}


def _imports(package: str) -> dict[str, set[str]]:
    """Third-party top-level module -> the files importing it (every import, also inside functions)."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in FIRST_PARTY:
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def _undeclared(package: str, declared: set[str]) -> list[str]:
    dists = importlib.metadata.packages_distributions()
    problems = []
    for module, files in sorted(_imports(package).items()):
        where = ", ".join(sorted(files)[:3])
        if module not in dists:
            problems.append(f"{module} (imported by {where}) is not installed, so it cannot be declared")
        elif not {_norm(d) for d in dists[module]} & declared:
            problems.append(f"{module} (imported by {where}) comes from {dists[module]}, which is not declared")
    return problems


def test_every_third_party_import_of_liverview_is_a_runtime_dependency():
    assert _undeclared("liverview", _declared()) == []


def test_every_runtime_dependency_is_imported_by_liverview():
    dists = importlib.metadata.packages_distributions()
    used = {_norm(d) for module in _imports("liverview") for d in dists.get(module, [])}
    assert _declared() - used - PYDICOM_PLUGINS == set(), "declared but never imported: drop them or move them to an extra"


def test_every_third_party_import_of_training_is_declared_for_training():
    assert _undeclared("training", _declared("training")) == []


def test_the_training_extra_holds_only_what_training_alone_imports():
    dists = importlib.metadata.packages_distributions()

    def dists_of(package: str) -> set[str]:
        return {_norm(d) for m in _imports(package) for d in dists.get(m, [])}

    extra = {_requirement_name(r) for r in _project()["optional-dependencies"]["training"]}
    assert extra - dists_of("training") == set(), "declared for training but not imported by training/"
    assert extra & dists_of("liverview") == set(), "the viewer imports these: they are runtime dependencies"


def test_opencv_is_only_ever_the_headless_wheel():
    # opencv-python ships its own Qt plugins, which break PySide6.
    project = _project()
    everything = list(project["dependencies"]) + [r for reqs in project["optional-dependencies"].values() for r in reqs]
    assert "opencv-python" not in {_requirement_name(r) for r in everything}


def test_the_test_extra_pulls_in_the_training_extra():
    # README's test command installs ".[test]" and runs training's tests too.
    test_extra = [r.replace(" ", "").lower() for r in _project()["optional-dependencies"]["test"]]
    assert "liverview[training]" in test_extra
