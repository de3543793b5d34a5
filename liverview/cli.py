"""The `liverview` command: the viewer, and the info / phantom / analyze sub-commands."""

from __future__ import annotations

import argparse
import importlib
import sys

# sub-command -> module exposing configure(parser) and run(args) -> exit code.
# Imported lazily so `liverview info` never pays for torch or Qt.
COMMANDS = {
    "info": ("liverview.io.info_command", "print what the loader finds in an exam"),
    "phantom": ("liverview.phantom.command", "write synthetic four-phase phantom exams"),
    "analyze": ("liverview.engine.analyze_command", "run detection and diagnosis on an exam"),
}


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
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in COMMANDS:
        module_name, help_text = COMMANDS[argv[0]]
        parser = argparse.ArgumentParser(prog=f"liverview {argv[0]}", description=help_text)
        module = importlib.import_module(module_name)
        module.configure(parser)
        args = parser.parse_args(argv[1:])
        return int(module.run(args) or 0)
    args = _viewer_parser().parse_args(argv)
    from liverview.qt.app import run_viewer  # Qt only when the viewer is asked for

    return int(run_viewer(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
