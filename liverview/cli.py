"""The `liverview` command: the viewer, and the info / phantom / analyze sub-commands."""

from __future__ import annotations

import argparse
import importlib
import os
import shlex
import sys
from pathlib import Path

# sub-command -> module exposing configure(parser) and run(args) -> exit code.
# Imported lazily so `liverview info` never pays for torch or Qt.
COMMANDS = {
    "info": ("liverview.io.info_command", "print what the loader finds in an exam"),
    "phantom": ("liverview.phantom.command", "write synthetic four-phase phantom exams"),
    "analyze": ("liverview.analyze_command", "run detection and diagnosis on an exam"),
}

EXAM_SUFFIXES = (".zip", ".dcm")


def version_text() -> str:
    """The package version and the default bundle's name, version and manifest sha256 (no torch, no Qt)."""
    from liverview import __version__
    from liverview.engine.default_bundle import bundle_identity, default_bundle_dir

    lines = [f"liverview {__version__}"]
    try:
        ident = bundle_identity()
    except (OSError, ValueError) as exc:
        lines.append(f"default bundle: none usable at {default_bundle_dir()} ({exc})")
    else:
        lines.append(f"default bundle: {ident.name} {ident.version} (manifest sha256 {ident.manifest_sha256})")
        lines.append(f"bundle folder: {ident.folder}")
    return "\n".join(lines)


class _VersionAction(argparse.Action):
    """--version, computed only when asked for (it reads the bundle manifest)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_text())
        parser.exit(0)


def _viewer_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="liverview",
        description="Four-phase liver CT workstation (research use only). "
        f"Sub-commands: {', '.join(COMMANDS)} (liverview COMMAND --help).",
    )
    p.add_argument("path", nargs="?", help="exam to open: folder, DICOMDIR or zip")
    p.add_argument("--demo", action="store_true", help="open a generated phantom demo exam")
    p.add_argument("--screenshot", metavar="FILE", help="render the window to a PNG and exit")
    p.add_argument("--bundle", metavar="DIR", help="model bundle folder (default: the bundled one)")
    p.add_argument("--version", action=_VersionAction, help="print the version and the default bundle, and exit")
    return p


def looks_like_exam(arg: str) -> bool:
    """Whether a positional names an exam rather than a mistyped sub-command.

    It does when it exists, or has a path separator, a .zip/.dcm suffix or the name DICOMDIR:
    a bare word that is none of these (`liverview anlyze`) is far more likely a typo.
    """
    if os.path.exists(arg):
        return True
    separators = [os.sep] + ([os.altsep] if os.altsep else [])
    if any(s in arg for s in separators):
        return True
    name = Path(arg).name
    return name.lower().endswith(EXAM_SUFFIXES) or name.upper() == "DICOMDIR"


def no_display_reason() -> str | None:
    """Why the viewer cannot open a window here, or None when it can try.

    Only X11/Wayland platforms need DISPLAY or WAYLAND_DISPLAY; an explicit QT_QPA_PLATFORM is
    left to Qt. Without this check Qt aborts the process (SIGABRT) with a hint about xcb-cursor0.
    """
    if sys.platform in ("win32", "darwin") or os.environ.get("QT_QPA_PLATFORM"):
        return None
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return None
    return "DISPLAY and WAYLAND_DISPLAY are not set"


def _screenshot_hint(args: argparse.Namespace) -> str:
    if args.path and not args.demo:
        return f"liverview {shlex.quote(args.path)} --screenshot liverview.png"
    return "liverview --demo --screenshot demo.png"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in COMMANDS:
        module_name, help_text = COMMANDS[argv[0]]
        parser = argparse.ArgumentParser(prog=f"liverview {argv[0]}", description=help_text)
        module = importlib.import_module(module_name)
        module.configure(parser)
        args = parser.parse_args(argv[1:])
        return int(module.run(args) or 0)
    parser = _viewer_parser()
    args = parser.parse_args(argv)
    if args.path is not None and not looks_like_exam(args.path):
        parser.error(
            f"unknown command {args.path!r} (choose from {', '.join(COMMANDS)}); an exam to open is an "
            "existing folder or file, a DICOMDIR, a .zip or .dcm, or a path with a separator"
        )
    reason = None if args.screenshot else no_display_reason()
    if reason:
        print(
            f"liverview: no display to open the viewer on ({reason}); "
            f"to get a picture instead, render the window to a PNG: {_screenshot_hint(args)}",
            file=sys.stderr,
        )
        return 2
    from liverview.qt.app import run_viewer  # Qt only when the viewer is asked for

    return int(run_viewer(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
