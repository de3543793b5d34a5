"""`python -m training COMMAND`: cohorts, splits, detector/classifier training, evaluation, ablations, default weights."""

from __future__ import annotations

import argparse
import importlib
import sys

# sub-command -> module exposing configure(parser) and run(args) -> exit code (imported lazily).
COMMANDS = {
    "cohort": ("training.commands.cohort", "materialise a cohort (phantom, exam folder or export) into a cache"),
    "split": ("training.commands.split", "patient-level train/validation split, checked for leaks"),
    "train-detector": ("training.commands.train_detector", "train the YOLOv8 detector on 4-channel composites"),
    "train-classifier": ("training.commands.train_classifier", "train one classifier (stage1, benign, malignant, onestep)"),
    "export": ("training.commands.export", "assemble trained runs into an engine model bundle"),
    "evaluate": ("training.commands.evaluate", "evaluate a model bundle on a cohort (metrics, CIs, ROC curves)"),
    "ablate": ("training.commands.ablate", "the paper's ablations as tables and plots"),
    "build-weights": ("training.commands.build_weights", "the seeded recipe that builds liverview/resources/models/default"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        p = argparse.ArgumentParser(prog="python -m training", description=__doc__)
        p.add_argument("command", choices=list(COMMANDS), help="; ".join(f"{k}: {v[1]}" for k, v in COMMANDS.items()))
        p.parse_args(argv[:1])
        return 2
    module_name, help_text = COMMANDS[argv[0]]
    parser = argparse.ArgumentParser(prog=f"python -m training {argv[0]}", description=help_text)
    module = importlib.import_module(module_name)
    module.configure(parser)
    args = parser.parse_args(argv[1:])
    try:
        return int(module.run(args) or 0)
    except (ValueError, FileNotFoundError) as exc:  # our errors are one line naming the file or field
        print(f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
