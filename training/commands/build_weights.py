"""`python -m training build-weights`: the seeded recipe that trains and evaluates the default model bundle."""

from __future__ import annotations

from pathlib import Path

from training.commands.common import log
from training.recipe import full_recipe, quick_recipe


def configure(p) -> None:
    p.add_argument("--out", default="liverview/resources/models/default", help="bundle folder to write (default liverview/resources/models/default)")
    p.add_argument("--work", help="folder for cohorts, runs and evaluations (default build/training/<recipe>)")
    p.add_argument("--device", default="auto", help="auto (GPU when present), cpu, cuda ...")
    p.add_argument("--quick", action="store_true", help="tiny cohorts and few epochs: checks the pipeline in minutes")
    p.add_argument("--render-workers", type=int, default=1, help="processes rendering phantom exams (default 1)")
    p.add_argument("--reuse", metavar="BUNDLE",
                   help="take over the models of this earlier bundle whose recorded training settings equal the recipe's "
                        "(so a new bundle differs only where the recipe changed)")
    p.add_argument("--reuse-models", default="", metavar="LIST",
                   help="comma-separated models (detector,stage1,benign,malignant) to take over from a bundle that "
                        "records only part of their settings (before 1.1.0); the unchecked settings are reported")
    p.add_argument("--card-only", action="store_true",
                   help="rewrite OUT/README.md (the model card) from the finished build's WORK/report.json; trains nothing")


def run(args) -> int:
    recipe = quick_recipe() if args.quick else full_recipe()
    recipe.render_workers = args.render_workers
    work = Path(args.work) if args.work else Path("build") / "training" / recipe.name
    if args.card_only:
        return rewrite_card(recipe, Path(args.out), work)
    named = tuple(m.strip() for m in args.reuse_models.split(",") if m.strip())
    report = build_and_summarise(recipe, args.out, work, args.device, args.reuse, named)
    return 0 if report else 1


def build_and_summarise(recipe, out, work, device, reuse=None, reuse_models=()) -> dict:
    from training.recipe import build

    report = build(recipe, out, work, device, reuse=reuse, reuse_models=reuse_models)
    h = report["heldout"]
    log(f"held-out: detection mAP@0.40 {h['detection']['map']:.4f}; "
        + ", ".join(f"{k} AUC {v['truth_boxes']['auc']['value']:.4f}" for k, v in h["classifiers"].items() if "truth_boxes" in v)
        + f"; two-stage accuracy {h['two_stage']['accuracy']:.4f}; total {report['timings_s']['total'] / 60:.1f} min")
    return report


def rewrite_card(recipe, out: Path, work: Path) -> int:
    """The model card again from a finished build, refused when the report came from another recipe."""
    import json

    from training.recipe import _plain, model_card

    report_path = work / "report.json"
    if not report_path.exists() or not (out / "manifest.json").exists():
        log(f"error: {report_path} or {out / 'manifest.json'} missing: run build-weights first")
        return 2
    report = json.loads(report_path.read_text(encoding="utf-8"))
    def settings(r):  # the changes text is the card's prose and render processes do not change a result
        return {k: v for k, v in (r or {}).items() if k not in ("changes", "render_workers")}

    if settings(report.get("recipe")) != settings(_plain(recipe)):
        log(f"error: {report_path} was written by another recipe than the current one: rebuild instead")
        return 2
    tmp = out / "README.md.tmp"
    tmp.write_text(model_card(recipe, report), encoding="utf-8")
    tmp.replace(out / "README.md")
    log(f"wrote {out / 'README.md'}")
    return 0
