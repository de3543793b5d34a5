"""Fixtures every test folder may use: a small phantom exam on disk and the smallest random model bundle."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.fixture(scope="session")
def phantom_exam(tmp_path_factory):
    """A small (64 x 64) four-phase phantom exam on disk: (exam folder, truth dict)."""
    from liverview.phantom import generate_exam

    out = tmp_path_factory.mktemp("phantom")
    truth = generate_exam(out, seed=3, patient_index=0, matrix=64)
    return out / truth["patient_id"], truth


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory):
    """The smallest random bundle (32 px classifiers, one block per ResNet stage), written by a child
    process so a test process that needs no torch (the viewer's) does not import it."""
    folder = tmp_path_factory.mktemp("bundle") / "tiny"
    code = (
        "import sys; from liverview.engine.bundle import make_random_bundle; "
        "make_random_bundle(sys.argv[1], input_size=32, det_input_size=64, arch_args={'layers': [1, 1, 1, 1]})"
    )
    subprocess.run([sys.executable, "-c", code, str(folder)], check=True, timeout=300)
    return folder
