"""The wheel carries the default bundle (manifest and every weight file it lists), and an installed copy finds it."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from liverview.engine.default_bundle import MANIFEST

pytestmark = pytest.mark.slow  # builds a 68 MB wheel: a few seconds

ROOT = Path(__file__).resolve().parents[1]
BUNDLE_IN_WHEEL = "liverview/resources/models/default"
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "liverview", "training")


def _setuptools_is_new_enough() -> bool:
    try:
        major = int(importlib.metadata.version("setuptools").split(".")[0])
    except importlib.metadata.PackageNotFoundError:
        return False
    return major >= 77  # pyproject's build-system floor (SPDX license string)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the sources (so the build leaves nothing in the checkout)."""
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    src.mkdir()
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        else:
            shutil.copy2(path, src / name)
    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(base / "dist"), str(src)]
    if _setuptools_is_new_enough():
        cmd.insert(4, "--no-build-isolation")  # build offline with the installed setuptools
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (built,) = (base / "dist").glob("liverview-*.whl")
    return built


def test_the_wheel_holds_the_manifest_and_every_file_it_lists(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        assert f"{BUNDLE_IN_WHEEL}/{MANIFEST}" in names
        manifest = json.loads(zf.read(f"{BUNDLE_IN_WHEEL}/{MANIFEST}"))
        source = json.loads((ROOT / BUNDLE_IN_WHEEL / MANIFEST).read_bytes())
        assert manifest == source
        listed = {m["file"] for m in manifest["models"].values()} | set(manifest["files"])
        for filename in sorted(listed):
            info = zf.getinfo(f"{BUNDLE_IN_WHEEL}/{filename}")
            assert info.file_size == manifest["files"][filename]["size"], filename
        assert "liverview/engine/yolov8.yaml" in names
        assert not any(n.startswith("resources/") for n in names), "nothing outside the packages"


def test_an_installed_copy_finds_its_bundle_inside_the_package(wheel, tmp_path):
    # A pure-Python wheel installs by unpacking it; run from there, away from the checkout.
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    script = (
        "import liverview, json, sys\n"
        "from liverview.engine.default_bundle import default_bundle_dir, bundle_identity\n"
        "print(json.dumps({'package': liverview.__file__, 'bundle': str(default_bundle_dir()),"
        " 'name': bundle_identity().name}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "LIVERVIEW_BUNDLE"}
    env["PYTHONPATH"] = str(site)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = json.loads(proc.stdout)
    assert Path(found["package"]).is_relative_to(site), found
    assert Path(found["bundle"]) == site / BUNDLE_IN_WHEEL
    assert (Path(found["bundle"]) / MANIFEST).is_file()
    assert found["name"] == json.loads((ROOT / BUNDLE_IN_WHEEL / MANIFEST).read_bytes())["name"]
