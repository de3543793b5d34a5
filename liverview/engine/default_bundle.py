"""Where the default model bundle is and which one it is, read without torch (for the CLI and the viewer)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

# The same file name liverview.engine.bundle reads (that module imports torch, so not taken from there).
MANIFEST = "manifest.json"


def default_bundle_dir() -> Path:
    """liverview/resources/models/default inside the installed package (LIVERVIEW_BUNDLE overrides)."""
    env = os.environ.get("LIVERVIEW_BUNDLE")
    if env:
        return Path(env)
    # setuptools installs liverview as plain files (never zipped), so the resource is a real folder.
    return Path(str(files("liverview").joinpath("resources", "models", "default")))


@dataclass(frozen=True)
class BundleIdentity:
    """A bundle's name, version and manifest sha256, as findings record them."""

    folder: Path
    name: str
    version: str
    manifest_sha256: str


def bundle_identity(folder: str | os.PathLike | None = None) -> BundleIdentity:
    """Name, version and manifest hash of the bundle in `folder` (default: the default bundle).

    The hash is the sha256 of the manifest file's bytes, as load_bundle computes it; the
    weights are neither read nor checked. OSError or ValueError when the manifest is missing
    or is not a JSON object with a name and a version.
    """
    where = Path(folder) if folder is not None else default_bundle_dir()
    path = where / MANIFEST
    raw = path.read_bytes()
    try:
        manifest = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or "name" not in manifest or "version" not in manifest:
        raise ValueError(f"{path}: no bundle name and version in the manifest")
    return BundleIdentity(where, str(manifest["name"]), str(manifest["version"]), hashlib.sha256(raw).hexdigest())
