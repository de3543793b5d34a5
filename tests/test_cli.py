"""The `liverview` command line: no display, unknown sub-commands, exam paths, --version."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap

import pytest

import liverview
from liverview import cli
from liverview.engine.default_bundle import MANIFEST, bundle_identity, default_bundle_dir

NO_DISPLAY_VARS = ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in NO_DISPLAY_VARS and k != "LIVERVIEW_BUNDLE"}
    env.update(extra)
    return env


def _run_main(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """main(args) in a fresh interpreter that then reports whether torch or Qt got imported."""
    script = textwrap.dedent(f"""
        import sys
        from liverview.cli import main
        try:
            rc = main({args!r})
        except SystemExit as exc:
            rc = exc.code
        heavy = sorted(m for m in ("torch", "PySide6", "pyqtgraph") if m in sys.modules)
        print("IMPORTED", ",".join(heavy) or "-", file=sys.stderr)
        sys.exit(rc)
    """)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)


def _stderr_lines(proc: subprocess.CompletedProcess) -> tuple[list[str], str]:
    lines = proc.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("IMPORTED "), proc.stderr
    return lines[:-1], lines[-1].split(" ", 1)[1]


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="only X11/Wayland platforms need DISPLAY")
def test_viewer_without_a_display_says_so_in_one_line_and_exits_2_before_importing_qt():
    proc = _run_main(["--demo"], _env())
    lines, imported = _stderr_lines(proc)
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1, lines
    assert "no display" in lines[0] and "liverview --demo --screenshot demo.png" in lines[0]
    assert "xcb" not in proc.stderr
    assert imported == "-"


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="only X11/Wayland platforms need DISPLAY")
def test_the_real_command_without_a_display_exits_2_not_sigabrt():
    proc = subprocess.run([sys.executable, "-m", "liverview", "--demo"], capture_output=True, text=True,
                          env=_env(), timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "xcb" not in proc.stderr


def test_no_display_reason_leaves_an_explicit_platform_or_a_display_to_qt(monkeypatch):
    for var in NO_DISPLAY_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(cli.sys, "platform", "linux")
    assert cli.no_display_reason()
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    assert cli.no_display_reason() is None
    monkeypatch.delenv("QT_QPA_PLATFORM")
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-0")
    assert cli.no_display_reason() is None
    monkeypatch.delenv("WAYLAND_DISPLAY")
    monkeypatch.setattr(cli.sys, "platform", "darwin")
    assert cli.no_display_reason() is None


def test_an_unknown_sub_command_is_an_argparse_error_naming_the_sub_commands():
    proc = _run_main(["foo"], _env())
    lines, imported = _stderr_lines(proc)
    assert proc.returncode == 2
    assert lines[0].startswith("usage: liverview")
    assert "unknown command 'foo'" in lines[-1] and "info, phantom, analyze" in lines[-1]
    assert imported == "-"


def test_what_counts_as_an_exam_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for word in ("foo", "anlyze", "phantoms"):
        assert not cli.looks_like_exam(word)
    for path in ("exam.zip", "EXAM.ZIP", "IM0001.dcm", "DICOMDIR", "dicomdir", "exams/p1", "./p1", "/no/such/exam"):
        assert cli.looks_like_exam(path), path
    (tmp_path / "foo").mkdir()
    assert cli.looks_like_exam("foo"), "an existing folder is an exam even without a separator"


def test_version_names_the_package_and_the_default_bundle_without_torch_or_qt():
    manifest_path = default_bundle_dir() / MANIFEST
    raw = manifest_path.read_bytes()
    manifest = json.loads(raw)
    digest = hashlib.sha256(raw).hexdigest()
    proc = _run_main(["--version"], _env())
    _, imported = _stderr_lines(proc)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert f"liverview {liverview.__version__}" in out
    assert manifest["name"] in out and manifest["version"] in out
    assert digest[:16] in out
    assert imported == "-", f"--version imported {imported}"


def test_version_with_no_usable_bundle_still_prints_the_version(tmp_path):
    proc = _run_main(["--version"], _env(LIVERVIEW_BUNDLE=str(tmp_path)))
    assert proc.returncode == 0, proc.stderr
    assert f"liverview {liverview.__version__}" in proc.stdout
    assert "none usable" in proc.stdout and str(tmp_path) in proc.stdout


def test_the_cli_manifest_hash_is_the_one_findings_record():
    from liverview.engine.bundle import load_bundle

    folder = default_bundle_dir()
    assert bundle_identity(folder).manifest_sha256 == load_bundle(folder).manifest_sha256


def test_every_sub_command_names_a_module_that_exists():
    import importlib.util

    for name, (module, _) in cli.COMMANDS.items():
        assert importlib.util.find_spec(module) is not None, f"liverview {name}: no module {module}"
