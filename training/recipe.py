"""The one seeded recipe behind liverview/resources/models/default: phantom cohorts, detector, three classifiers, evaluation.

Steps are cached in a work folder (cohorts, splits, runs), so an interrupted build picks up
where it stopped. The bundle's manifest carries the metrics of the held-out >= 200-patient
cohort, and its README is the model card.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from training.bundle_export import PHANTOM_NOTICE, classifier_manifest_entry, detector_entry, export_bundle
from training.checkpoint import load_weights
from training.classifier import ClassifierConfig
from training.cohort import Cohort, concat, load_cohort, save_cohort
from training.detector import DetectorConfig
from training.evaluation import evaluate_bundle, markdown
from training.runs import classifier_run, detector_run, ran_on, start_on, write_json
from training.sources import PAPER_MIX, phantom_cohort, renderer_fingerprint
from training.splits import check_cohorts_disjoint, save_splits, stratified_split

EQUAL_MIX = {"HH": 1, "OBHT": 1, "HB": 1, "OMHT": 1}
# The issue's targets on the held-out cohort (the paper's reported values are the floor, not the goal).
TARGETS = {"detection mAP@0.40": 0.90, "stage1 AUC": 0.99, "benign AUC": 0.95, "malignant AUC": 0.98}
COMMAND = "python -m training build-weights --out liverview/resources/models/default"


@dataclass
class CohortSpec:
    name: str
    patients: int
    seed: int
    mix: dict = field(default_factory=lambda: dict(PAPER_MIX))
    why: str = ""
    member: str | None = None  # every patient of this one lesion type (e.g. "HCC"); the mix must be its class

    def data_doc(self) -> dict:
        """What decides the cohort's images (its name and the why are labels)."""
        return {"patients": self.patients, "seed": self.seed, "mix": _shares(self.mix), "member": self.member}


@dataclass
class Recipe:
    """Every number the default bundle depends on."""

    name: str = "liverview-default-phantom"
    version: str = "1.2.0"
    matrix: int = 256  # phantom render grid and cohort cache grid
    trainval: CohortSpec = field(default_factory=lambda: CohortSpec(
        "trainval", 148, 1001, dict(PAPER_MIX), "like the paper's cohort A: 148 patients in its class proportions HH 77 : OBHT 14 : HB 47 : OMHT 4"))
    test17: CohortSpec = field(default_factory=lambda: CohortSpec(
        "test17", 17, 2002, dict(PAPER_MIX), "like the paper's prospective cohort B: 17 patients"))
    heldout: CohortSpec = field(default_factory=lambda: CohortSpec(
        "heldout", 210, 4004, dict(PAPER_MIX),
        "held-out cohort for the manifest metrics: new patients from the training population (the paper's class "
        "proportions); 210 rendered so that at least 200 remain after exams the protocol cannot use are left out"))
    stress: CohortSpec = field(default_factory=lambda: CohortSpec(
        "rare_stress", 100, 3003, dict(EQUAL_MIX),
        "rare-class stress test: equal class mix, so OBHT and OMHT members (seen in training by only a few "
        "patients each) weigh as much as HH and HB"))
    untouched: CohortSpec = field(default_factory=lambda: CohortSpec(
        "untouched", 210, 8228, dict(PAPER_MIX),
        "a second held-out cohort from the training population, first drawn after every setting of this recipe "
        "version was fixed (settings were tried against phantom test cohorts while the recipe was developed, so the "
        "'heldout' figures are not untouched; these are; earlier untouched cohorts, seeds 5005, 6006 and 8008, have "
        "been looked at since and are not used again)"))
    # task -> extra phantom patients that only that classifier trains on, after the development cohort
    supplements: dict = field(default_factory=dict)
    split_seed: int = 0
    val_fraction: float = 0.3
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    classifiers: dict = field(default_factory=dict)  # task -> ClassifierConfig
    n_boot: int = 1000
    # "all": the shipped classifiers are fitted on every development patient (train + validation) with the
    # epochs fixed beforehand; with the paper's mix the validation split holds a single OMHT patient, so it
    # cannot select a subtype model, while a second patient of a rare member doubles what the model sees.
    # "train": fit on the training split, keep the epoch with the best validation exam AUC.
    classifier_fit: str = "all"
    render_workers: int = 1
    render_args: dict = field(default_factory=dict)  # extra render_exam arguments (tests: n_slices)
    half_tolerance: float = 0.005  # largest mAP / AUC change float16 may cause and still be shipped
    changes: tuple[str, ...] = ()  # what this version changed against the last, and the evidence (the model card)

    def test_specs(self) -> tuple[CohortSpec, ...]:
        """Every test cohort, none of them seen in training."""
        return (self.test17, self.heldout, self.stress, self.untouched)

    def training_data(self, key: str) -> dict:
        """What model `key` (a classifier or "detector") is fitted on, as recorded in its manifest entry and
        compared by --reuse. The detector trains on the split's training side and is selected on its validation side."""
        specs = [self.trainval] + ([self.supplements[key]] if key in self.supplements else [])
        fit = "split" if key == "detector" else self.classifier_fit
        doc = {"fit": fit, "matrix": self.matrix, "render_args": dict(self.render_args),
               "cohorts": [s.data_doc() for s in specs]}
        if fit != "all":
            doc["split"] = {"seed": self.split_seed, "validation_fraction": self.val_fraction}
        return json.loads(json.dumps(doc))  # as the manifest stores it (tuples become lists)

    def __post_init__(self) -> None:
        if not self.classifiers:
            self.classifiers = {k: ClassifierConfig(task=k) for k in ("stage1", "benign", "malignant")}


# The evidence behind 1.2.0, measured before its untouched cohort was drawn (build/dev, not shipped):
# malignant-subtype exam AUC on two development cohorts (seed 7007: 25 HB vs 11 UESL + 14 HCC; seed 7117: 150 HB vs
# 29 UESL + 21 HCC), the 1.1.0 settings fitted on the 148 development patients plus each supplement, seeds 0 / 1.
MALIGNANT_OMHT_SUPPLEMENT_CHANGE = (
    "1.2.0 against 1.1.0: the malignant-subtype classifier also trains on a supplement of 10 OMHT phantom patients "
    "(seed 9119, members drawn as the phantom draws them: 6 HCC, 4 UESL), after the 148-patient development cohort. "
    "That cohort's 4 OMHT patients hold 2 HCC, both of the 'obvious enhancement' variant, and 1.1.0 called most HCC "
    "hepatoblastoma. Chosen on two development cohorts drawn for the purpose (seed 7007: 25 HB vs 11 UESL + 14 HCC; "
    "seed 7117: 150 HB vs 29 UESL + 21 HCC; no test cohort), exam AUC 7007 | 7117, seeds 0 / 1: no supplement (1.1.0) "
    "0.938 / 0.914 | 0.941 / 0.926; +2, +4 HCC 0.954, 0.976 | -; +6 HCC 0.998 / 0.982 | 0.993 / 0.985; +10 HCC "
    "0.990 / 0.995 | 0.998 / 0.997; +6 HCC +4 UESL 0.987 | 0.993; +10 OMHT as drawn 0.986 / 0.973 | 0.999 / 0.999. "
    "The rule, fixed before the last runs: the best mean on the larger cohort (7117), the population draw over a "
    "member-targeted supplement when within 0.002. Changes to the model alone, tried first on 7007, left two HCC at "
    "P(OMHT) 0.02-0.04 in every run: scanner-noise and blur jitter 0.922, weight decay 5e-4 0.910, a one-step "
    "4-class model read as HB vs OMHT 0.904 / 0.894, the mean of three seeds 0.923.",
    "A first candidate (+6 HCC, seed 9009) was built and tested before the second development cohort was drawn: "
    "malignant AUC held-out 0.981, rare-class stress 0.992, and 0.971 on a new untouched cohort (seed 8008: 2 HCC + "
    "4 UESL vs 69 HB, two HB at P(OMHT) 0.77-0.81), where 1.1.0 scored 0.995. Seed 8008 has therefore been looked at "
    "and is not used again; this version's untouched cohort is seed 8228.",
    "This departs from the paper's cohort A for this one model, as a study short of a rare tumour type would "
    "enrich it: the development cohort itself (148 patients, the paper's mix) is unchanged and is all the detector, "
    "stage-1 and benign models see; they are taken over from 1.1.0 byte for byte (`--reuse`).",
    "Measured after the build, malignant-subtype AUC (truth boxes) of 1.2.0 against 1.1.0; no figure below chose "
    "anything: a check cohort drawn after the recipe was fixed, with enough OMHT to resolve the 0.98 target (seed "
    "8118, 200 patients: 150 HB vs 24 HCC + 26 UESL; `python -m training evaluate`) 0.984 (t-interval 0.960-1.000, "
    "bootstrap 0.952-1.000) against 0.922 (0.869-0.975); untouched (seed 8228) 1.000 against 0.986; rare-class "
    "stress (25 OMHT) 1.000 against 0.955; held-out 1.000 against 1.000; 1.1.0's untouched cohort (seed 6006, "
    "looked at before) 0.952 against 0.829.",
)


def full_recipe() -> Recipe:
    """The default bundle: sizes picked to finish in well under an hour on a 2-core CPU (see the card)."""
    # AdamW with a 1-epoch warmup and mosaic learn from scratch faster than SGD on CPU-sized budgets;
    # 256 px is the cache's native grid: smaller inputs lost the smallest haemangiomas.
    det = DetectorConfig(scale="n", imgsz=256, epochs=50, batch=16, expansion="flat", augment="pkcp-mixup",
                         mixup=0.6, optimizer="AdamW", lr0=0.002, warmup_epochs=1.0, mosaic=1.0, close_mosaic=10,
                         patience=100, conf=0.25, iou=0.6)
    common = dict(backbone="resnet18", input_size=64, roi_margin=0.15, augmentation="pkcp-mixup", epochs=15,
                  samples_per_epoch=1536, batch_size=64, lr=0.02, momentum=0.9, weight_decay=1e-4, schedule="cosine")
    classifiers = {k: ClassifierConfig(task=k, **common) for k in ("stage1", "benign", "malignant")}
    # 1.1.0: four OMHT patients (two UESL, two HCC) are all the malignant-subtype model learns OMHT from;
    # PKCP-MixUp recombines their slices but never shows a lesion in a new pose
    classifiers["malignant"] = dataclasses.replace(classifiers["malignant"], geometric=True)
    # 1.2.0: four OMHT patients (two HCC of one enhancement variant) do not teach HCC; ten more patients do
    supplements = {"malignant": CohortSpec(
        "supplement_omht", 10, 9119, {"OMHT": 1}, "the development cohort's 4 OMHT patients (2 HCC, 2 UESL) are too "
        "few to learn OMHT from (see Changes)")}
    return Recipe(detector=det, classifiers=classifiers, supplements=supplements, changes=MALIGNANT_OMHT_SUPPLEMENT_CHANGE)


def quick_recipe() -> Recipe:
    """A few minutes on a CPU: proves the pipeline runs end to end; its numbers mean little."""
    r = full_recipe()
    r.name, r.version = "liverview-quick-phantom", "0.0.1-quick"
    r.changes = ()
    r.matrix = 128
    r.trainval = CohortSpec("trainval", 24, 1001, dict(EQUAL_MIX), "quick")
    r.test17 = CohortSpec("test17", 8, 2002, dict(EQUAL_MIX), "quick")
    r.heldout = CohortSpec("heldout", 16, 4004, dict(EQUAL_MIX), "quick")
    r.stress = CohortSpec("rare_stress", 8, 3003, dict(EQUAL_MIX), "quick")
    r.untouched = CohortSpec("untouched", 8, 5005, dict(EQUAL_MIX), "quick")
    r.supplements = {"malignant": dataclasses.replace(r.supplements["malignant"], patients=2)}
    r.detector = dataclasses.replace(r.detector, imgsz=96, epochs=2, batch=8)
    r.classifiers = {k: dataclasses.replace(c, epochs=2, input_size=32, batch_size=32, samples_per_epoch=None)
                     for k, c in r.classifiers.items()}
    r.n_boot = 200
    return r


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cohort_for(spec: CohortSpec, matrix: int, work: Path, workers: int, log: Callable[[str], None],
               render_args: dict | None = None) -> Cohort:
    """The spec's phantom cohort, read from the work folder when it was already rendered with the same spec."""
    path = work / "cohorts" / f"{spec.name}.npz"
    render_args = {**(render_args or {}), **({"member": spec.member} if spec.member else {})}
    if path.exists():
        c = load_cohort(path)
        m = c.meta
        if (m.get("seed"), m.get("patients"), m.get("matrix"), m.get("mix"), m.get("render_args") or {}) == (
            spec.seed, spec.patients, matrix, _shares(spec.mix), dict(render_args or {})
        ):
            if m.get("renderer") == renderer_fingerprint():
                log(f"cohort {spec.name}: cached ({len(c)} patients)")
                return c
            log(f"cohort {spec.name}: cached by other phantom code ({m.get('renderer') or 'unrecorded'}), rendering again")
    t0 = time.time()
    from training.commands.common import Progress

    c = phantom_cohort(spec.patients, spec.seed, spec.mix, matrix, workers, Progress(f"rendering {spec.name}", 30.0),
                       render_args)
    save_cohort(c, path)
    log(f"cohort {spec.name}: {len(c)} patients {c.counts()} rendered in {time.time() - t0:.0f} s")
    return c


def build(recipe: Recipe, out: str | Path, work: str | Path, device: str = "auto",
          log: Callable[[str], None] = _log, reuse: str | Path | None = None, reuse_models: tuple[str, ...] = ()) -> dict:
    """Run the whole recipe; returns the report that goes into the card.

    With `reuse` (an earlier bundle), a model whose manifest entry records the same training
    settings is taken over instead of retrained; one whose entry records only part of them (bundles
    before 1.1.0) only when named in `reuse_models`, and the settings it could not check are reported.
    """
    _check_cohort_specs(recipe)
    out, work = Path(out), Path(work)
    work.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t_all = time.time()
    taken = _reusable(recipe, reuse, reuse_models, device, log) if reuse else {}

    t = time.time()
    cohorts = {s.name: cohort_for(s, recipe.matrix, work, recipe.render_workers, log, recipe.render_args)
               for s in (recipe.trainval, *recipe.supplements.values(), *recipe.test_specs())}
    timings["cohorts"] = time.time() - t
    check_cohorts_disjoint(cohorts)
    trainval = cohorts[recipe.trainval.name]
    splits = stratified_split(trainval.patient_ids, trainval.classes, recipe.val_fraction, recipe.split_seed)
    save_splits(work / "splits.json", splits, seed=recipe.split_seed, val_fraction=recipe.val_fraction,
                test_cohorts=[s.name for s in recipe.test_specs()])
    train, val = trainval.subset(splits["train"]), trainval.subset(splits["validation"])
    log(f"split: train {len(train)} {train.counts()}, validation {len(val)} {val.counts()}")

    t = time.time()
    det_cfg = dataclasses.replace(recipe.detector, device=device)
    det_dir = work / "detector"
    if "detector" in taken:
        det_state, det_summary = taken["detector"].state, taken["detector"].summary
    else:
        det_state, det_summary = _cached_detector(det_dir, det_cfg, {"train": train.digest(), "validation": val.digest()}, log)
    if det_state is None:
        det_state, det_summary = detector_run(train, val, det_cfg, det_dir)
    timings["detector"] = time.time() - t
    log(f"detector: best epoch {det_summary['best_epoch'] + 1}, {det_summary['seconds']} s")

    clf = {}
    for key, cfg in recipe.classifiers.items():
        t = time.time()
        cfg = dataclasses.replace(cfg, device=device)
        if key in taken:
            clf[key] = (taken[key].state, taken[key].summary)
            timings[f"classifier_{key}"] = time.time() - t
            continue
        fit = trainval if recipe.classifier_fit == "all" else train
        sup = recipe.supplements.get(key)
        if sup is not None:  # extra patients of a rare type, for this model only; never in the validation split
            fit = concat([fit, cohorts[sup.name]])
            log(f"classifier {key}: {recipe.trainval.name} plus {sup.name} ({len(cohorts[sup.name])} patients)")
        state, summary = classifier_run(fit, val if recipe.classifier_fit == "train" else None, cfg,
                                        work / f"classifier_{key}", resume=True, log=log)
        clf[key] = (state, summary)
        timings[f"classifier_{key}"] = time.time() - t

    def data_record(key: str):
        # a taken-over model whose bundle did not record its data keeps it unrecorded: an assumption is not a record
        return None if key in taken and "training data" in taken[key].unchecked else recipe.training_data(key)

    det_entry = detector_entry(det_cfg.scale, det_cfg.imgsz, det_cfg.conf, det_cfg.iou, det_summary,
                               data=data_record("detector"))
    entries = {k: (s, classifier_manifest_entry(k, summ, data=data_record(k))) for k, (s, summ) in clf.items()}
    training_data = {
        "source": "liverview synthetic four-phase phantom (liverview.phantom), rendered in memory",
        "train_validation": {**asdict(recipe.trainval), "counts": trainval.counts(),
                             "train_patients": len(train), "validation_patients": len(val)},
        "split": {"seed": recipe.split_seed, "validation_fraction": recipe.val_fraction, "by": "patient, stratified by class"},
        "supplements": {k: {**asdict(s), "counts": cohorts[s.name].counts()} for k, s in recipe.supplements.items()},
        "test_cohorts": {s.name: {**asdict(s), "counts": cohorts[s.name].counts()} for s in recipe.test_specs()},
        "matrix": recipe.matrix,
        "renderer": renderer_fingerprint(),  # the phantom code that rendered every cohort above
    }

    # float32 and float16 bundles, both evaluated on the held-out cohort
    t = time.time()
    results = {}
    for dtype, folder in (("float32", work / "bundle_float32"), ("float16", work / "bundle_float16")):
        det_w, clf_w = _weights_for(dtype, det_state, det_entry, entries, taken)
        export_bundle(folder, recipe.name, recipe.version, det_w, clf_w, training_data,
                      {"note": "being evaluated"}, half=dtype == "float16")
        results[dtype] = evaluate_bundle(folder, cohorts[recipe.heldout.name], work / f"eval_{dtype}", recipe.n_boot,
                                         name=f"{recipe.heldout.name} ({dtype})")
    diff = half_difference(results["float32"], results["float16"])
    half = diff <= recipe.half_tolerance
    chosen = "float16" if half else "float32"
    log(f"float16 vs float32 on the held-out cohort: largest metric change {diff:.5f} -> shipping {chosen}")
    test17 = evaluate_bundle(work / f"bundle_{chosen}", cohorts[recipe.test17.name], work / "eval_test17", recipe.n_boot,
                             name=recipe.test17.name)
    stress = evaluate_bundle(work / f"bundle_{chosen}", cohorts[recipe.stress.name], work / "eval_stress", recipe.n_boot,
                             name=recipe.stress.name)
    untouched = evaluate_bundle(work / f"bundle_{chosen}", cohorts[recipe.untouched.name], work / "eval_untouched",
                                recipe.n_boot, name=recipe.untouched.name)
    timings["evaluation"] = time.time() - t
    heldout = results[chosen]
    timings["total"] = time.time() - t_all

    metrics = manifest_metrics(heldout, recipe.heldout, test17, stress, untouched)
    metrics["float16_check"] = {"largest_metric_change": diff, "tolerance": recipe.half_tolerance, "shipped": chosen}
    sides = np.nanmax(np.stack([trainval.boxes[..., 2] - trainval.boxes[..., 0],
                                trainval.boxes[..., 3] - trainval.boxes[..., 1]]), axis=0)
    sides = sides[~np.isnan(sides)]
    report = {
        "skipped": {n: list(c.meta.get("skipped") or []) for n, c in cohorts.items()},
        "lesion_px": {"p5": float(np.percentile(sides, 5)), "median": float(np.median(sides)),
                      "p95": float(np.percentile(sides, 95))},
        "recipe": _plain(recipe),
        "command": COMMAND,
        "built_with": COMMAND + (f" --reuse {reuse}" if reuse else "")
        + (f" --reuse-models {','.join(reuse_models)}" if reuse and reuse_models else ""),
        # where this build trained (a taken-over detector does not say where it was trained)
        "device": det_summary.get("device") or next((s.get("device") for _, s in clf.values() if s.get("device")), None),
        "host": {"python": platform.python_version(), "torch": torch.__version__, "cpu_threads": torch.get_num_threads()},
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        # training time of each model as its run recorded it, also when this build reused a finished run
        "train_seconds": {"detector": det_summary.get("seconds"), **{k: s.get("seconds") for k, (_, s) in clf.items()}},
        "detector": {k: v for k, v in det_summary.items() if k != "history"},
        "classifiers": {k: {kk: vv for kk, vv in s.items() if kk != "history"} for k, (_, s) in clf.items()},
        "heldout": heldout,
        "test17": test17,
        "stress": stress,
        "untouched": untouched,
        "half": {"largest_metric_change": diff, "shipped": chosen},
        "reused": {k: {"from": t.summary["reused_from"], "unchecked": t.unchecked,
                       "file": "byte for byte" if t.dtype == chosen else f"re-encoded as {chosen}"} for k, t in taken.items()},
    }
    write_json(work / "report.json", report)

    if out.exists():
        shutil.rmtree(out)
    det_w, clf_w = _weights_for(chosen, det_state, det_entry, entries, taken)
    export_bundle(out, recipe.name, recipe.version, det_w, clf_w, training_data, metrics,
                  half=half, extra={"build": {"command": COMMAND, "timings_s": report["timings_s"],
                                              "device": report["device"]}})
    (out / "README.md").write_text(model_card(recipe, report), encoding="utf-8")
    for name, src in (("heldout", work / f"eval_{chosen}"), ("test17", work / "eval_test17"), ("stress", work / "eval_stress"),
                      ("untouched", work / "eval_untouched")):
        for png in sorted(src.glob("roc_*.png")):
            shutil.copy(png, out / f"{name}_{png.name}")
    log(f"wrote {out} in {timings['total'] / 60:.1f} min")
    return report


def _check_cohort_specs(recipe: Recipe) -> None:
    """Refuse, before anything is rendered or trained, what the build would trip over later: an unknown
    classifier fit, two cohorts under one name (its cache file), a member cohort whose mix is not the member's
    class, a supplement for a model that is not trained."""
    from liverview.phantom.priors import MEMBER_CLASS

    if recipe.classifier_fit not in ("all", "train"):
        raise ValueError(f"classifier_fit {recipe.classifier_fit!r}: expected 'all' or 'train'")

    specs: dict[str, CohortSpec] = {}
    for s in (recipe.trainval, *recipe.supplements.values(), *recipe.test_specs()):
        if s.name in specs and specs[s.name] != s:  # one supplement may serve two classifiers
            raise ValueError(f"recipe: cohort name {s.name!r} is used twice; each cohort needs its own name")
        specs[s.name] = s
        if s.member is not None:
            cls = MEMBER_CLASS.get(s.member)
            if cls is None:
                raise ValueError(f"recipe: cohort {s.name!r}: member {s.member!r}, expected one of {', '.join(MEMBER_CLASS)}")
            if _shares(s.mix).get(cls) != 1.0:
                raise ValueError(f"recipe: cohort {s.name!r}: every patient is {s.member}, so its mix must be {{{cls!r}: 1}}")
    unknown = sorted(set(recipe.supplements) - set(recipe.classifiers))
    if unknown:
        raise ValueError(f"recipe: supplement for {unknown[0]!r}, which is not one of the classifiers "
                         f"({', '.join(recipe.classifiers)})")


def _shares(mix) -> dict:
    from liverview.phantom import parse_mix

    return dict(parse_mix(dict(mix) if mix else None))


def _weights_for(dtype: str, det_state, det_entry: dict, entries: dict, taken: dict):
    """What export_bundle writes: the taken-over files byte for byte where the bundle's dtype is theirs
    (so git stores no second copy), the state dicts otherwise."""

    def pick(key, state):
        t = taken.get(key)
        return t.file if t is not None and t.dtype == dtype else state

    return (pick("detector", det_state), det_entry), {k: (pick(k, st), e) for k, (st, e) in entries.items()}


def _reusable(recipe: Recipe, folder: str | Path, named: tuple[str, ...], device: str, log) -> dict:
    """{model: Taken} of the earlier bundle's models this recipe can take over."""
    from liverview.engine.bundle import load_bundle

    from training.reuse import ReuseError, Taken, classifier_from_bundle, detector_from_bundle

    bundle = load_bundle(folder)  # checksums verified
    taken = {}
    for key in ("detector", *recipe.classifiers):
        entry = bundle.manifest.get("models", {}).get(key)
        if entry is None:
            continue
        if not isinstance((entry.get("training") or {}).get("config"), dict) and key not in named:
            log(f"reuse {key}: {folder} records only part of its settings; name it in --reuse-models to take it over")
            continue
        try:
            if key == "detector":
                got = detector_from_bundle(bundle, dataclasses.replace(recipe.detector, device=device),
                                           recipe.training_data("detector"))
            else:
                got = classifier_from_bundle(bundle, key, dataclasses.replace(recipe.classifiers[key], device=device),
                                             recipe.training_data(key))
        except ReuseError as exc:
            log(f"reuse {key}: {exc}")
            continue
        t = taken[key] = Taken(*got, bundle.manifest.get("weights_dtype"), bundle.file_bytes(key))
        log(f"reuse {key}: taken over from {bundle.name} {bundle.version}"
            + (f" (settings its manifest does not record, taken as unchanged: {', '.join(t.unchecked)})" if t.unchecked else ""))
    return taken


def _cached_detector(folder: Path, cfg: DetectorConfig, data: dict, log):
    """Reuse a finished detector run with the same configuration on the same patients (no retraining after
    an interruption); otherwise clear it and record the data the new run is started on."""
    summary_path, weights = folder / "detector_train.json", folder / "detector.safetensors"
    if summary_path.exists() and weights.exists():
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        same_data = ran_on(folder, data)
        if summary.get("config") == json.loads(json.dumps(asdict(cfg))) and same_data:
            log("detector: finished run found, reusing its weights")
            return load_weights(weights), summary
        if not same_data:
            log("detector: the finished run there was on other training data, training again")
    start_on(folder, data, (summary_path.name, weights.name))
    return None, None


def half_difference(a: dict, b: dict) -> float:
    """Largest absolute change of a threshold-free metric (detection mAP, every AUC) between two evaluations.

    Threshold metrics (accuracy, sensitivity, ...) are left out on purpose: one exam whose
    probability sits at the cut moves them by 1/n (0.0075 for 133 exams) whatever the precision,
    so they cannot tell a harmless rounding from a damaged model.
    """
    diffs = [abs(a["detection"]["map"] - b["detection"]["map"])]
    for key, entry in a["classifiers"].items():
        for kind, m in entry.items():
            v, w = m["auc"]["value"], b["classifiers"][key][kind]["auc"]["value"]
            if v == v and w == w:  # skip NaN
                diffs.append(abs(v - w))
    return float(max(diffs))


def manifest_metrics(heldout: dict, spec: CohortSpec, test17: dict, stress: dict, untouched: dict) -> dict:
    """The metrics block of the manifest: held-out cohort first (the ones the UI may quote)."""

    def short(res):
        out = {"detection_iou040": {k: res["detection"][k] for k in ("map", "precision", "recall", "f1")}}
        for key, entry in res["classifiers"].items():
            m = entry.get("truth_boxes")
            if m:
                out[key] = {n: {"value": m[n]["value"], "ci95_t": m[n]["ci_t"], "ci95_bootstrap": m[n]["ci_bootstrap"]}
                            for n in ("auc", "accuracy", "sensitivity", "specificity", "f1")}
                out[key]["exams"] = m["exams"]
            d = entry.get("detected_boxes")
            if d:
                out[f"{key}_on_detected_boxes"] = {"auc": d["auc"]["value"], "accuracy": d["accuracy"]["value"]}
        out["two_stage_accuracy_on_detected_boxes"] = res["two_stage"]["accuracy"]
        return out

    return {
        "cohort": f"held-out phantom cohort '{spec.name}': {heldout['cohort']['patients']} patients {heldout['cohort']['counts']} (seed {spec.seed})",
        "protocol": heldout["cohort"]["protocol"] + "; classifier metrics on annotated boxes, 95% CIs by t-interval and patient bootstrap",
        "heldout": short(heldout),
        "test17": short(test17),
        "rare_stress": short(stress),
        "untouched": short(untouched),
        "note": "synthetic phantom data: not clinical evidence",
    }


def _plain(obj):
    return json.loads(json.dumps(obj, default=lambda o: asdict(o) if dataclasses.is_dataclass(o) else str(o)))


def target_rows(heldout: dict) -> list[tuple[str, float, float, bool]]:
    """(metric, value, target, met) for each target, from a held-out evaluation (classifiers on annotated boxes)."""
    values = {"detection mAP@0.40": heldout["detection"]["map"]}
    for key in ("stage1", "benign", "malignant"):
        values[f"{key} AUC"] = heldout["classifiers"][key]["truth_boxes"]["auc"]["value"]
    return [(name, values[name], target, bool(values[name] >= target)) for name, target in TARGETS.items()]


def _reuse_note(report: dict, key: str) -> str:
    r = (report.get("reused") or {}).get(key)
    if not r:
        return ""
    f = r["from"]
    return (f" Taken over unchanged from {f['name']} {f['version']} (manifest sha256 {f['manifest_sha256'][:16]}…, "
            f"file {r.get('file', 'byte for byte')}): its recorded training settings equal this recipe's"
            + (f"; not recorded there, so taken as unchanged: {', '.join(r['unchecked'])}" if r["unchecked"] else "") + ".")


def model_card(recipe: Recipe, report: dict) -> str:
    det = recipe.detector
    c1 = recipe.classifiers["stage1"]
    t = report["timings_s"]
    held, t17 = report["heldout"], report["test17"]
    lines = [
        f"# {recipe.name} {recipe.version}: model card",
        "",
        f"**{PHANTOM_NOTICE}**",
        "",
        "Rebuild (seeded, CPU or GPU):",
        "",
        "```",
        COMMAND,
        "```",
        "",
        *([f"This bundle was built with `{report['built_with']}`: the models named under Changes were trained, "
           "the others taken over from the earlier bundle (their files are the earlier bundle's, byte for byte; a "
           "rebuild without `--reuse` retrains them with the same settings).", ""]
          if report.get("built_with", COMMAND) != COMMAND else []),
        "## What is inside",
        "",
        f"- `detector.safetensors`: YOLOv8{det.scale} (ultralytics architecture built by `liverview.engine.yolo.build_detector`), "
        f"4 input channels (P, A, V, D composites), one class `tumor`, input {det.imgsz} px, trained {det.epochs} epochs "
        f"from scratch (batch {det.batch}, {det.optimizer} lr0 {det.lr0}, warmup {det.warmup_epochs:g} epoch(s), mosaic "
        f"{det.mosaic:g} switched off for the last {det.close_mosaic} epochs, ultralytics MixUp p={det.mixup}, flips, "
        f"scale/translate jitter), on the "
        f"{'depth-consistent composites (PKCP without class-rebalance, the paper best detector setting)' if det.expansion == 'flat' else det.expansion + ' composites'}; "
        f"best epoch {report['detector'].get('best_epoch', -1) + 1}. The engine uses conf {det.conf}, NMS IoU {det.iou}."
        + _reuse_note(report, "detector"),
    ]
    for key, cfg in recipe.classifiers.items():
        s = report["classifiers"][key]
        lines.append(
            f"- `{key}.safetensors`: {cfg.backbone} (4-channel first layer, random init: no ImageNet file offline), ROI crop "
            f"{cfg.input_size} px (box + {cfg.roi_margin:.0%} margin, outside masked), {cfg.augmentation} "
            f"({'PKCP: 81 composites per minority exam, 3 per majority exam' if cfg.rebalance else 'no rebalance'}, Balanced-MixUp Beta(2,2))"
            + (", plus random flip, rotation (±15°) and scale (0.9-1.1) of every sample" if cfg.geometric else "")
            + f", SGD lr {cfg.lr} {cfg.schedule}, momentum {cfg.momentum}, weight decay {cfg.weight_decay}, batch {cfg.batch_size}, "
            f"{cfg.epochs} epochs of {cfg.samples_per_epoch or s['train_composites']} samples "
            + (f"(best by validation exam AUC: epoch {s['best_epoch'] + 1})" if s["val_exams"] else
               "(the last epoch: fitted on all development patients, see below)")
            + f", {s['train_composites']} training composites from {s['train_exams']} exams." + _reuse_note(report, key)
        )
    lines += [
        "",
        "Why these sizes: the bundle must be rebuilt on a 2-core CPU workstation in well under two hours "
        "and run interactively there. YOLOv8n at "
        f"{det.imgsz} px and {c1.backbone} on {c1.input_size} px ROI crops keep one build under an hour there; lesion boxes "
        f"on the phantom's {recipe.matrix} px slices measure {report['lesion_px']['p5']:.0f}-{report['lesion_px']['p95']:.0f} px "
        f"(5th-95th percentile of the longer side, median {report['lesion_px']['median']:.0f} px), so the detector at "
        f"{det.imgsz} px still sees them at {det.imgsz / recipe.matrix:.2f}x and the crops keep their texture. "
        f"Weights are stored as {report['half']['shipped']} (float16 changed detection mAP and the AUCs by at most "
        f"{report['half']['largest_metric_change']:.4f} on the held-out cohort; tolerance {recipe.half_tolerance}).",
        "",
        "Classifier fit: " + ("the detector is selected on the 70/30 validation split; the three classifiers are "
        "fitted on all development patients (train + validation) with a fixed schedule, because with the paper's "
        "mix the validation split holds one OMHT and a handful of OBHT patients — too few to select a subtype model — "
        "while one more patient of a rare lesion type is a large share of what the model can learn from. "
        "No test cohort chose an epoch or a model; the recipe's settings themselves were tried against phantom "
        "test cohorts while it was developed, which is why the untouched cohort exists." if recipe.classifier_fit == "all" else
        "the classifiers are fitted on the training split and the epoch with the best validation exam AUC is kept."),
        "",
        "## Training data",
        "",
        f"- train/validation: {recipe.trainval.patients} phantom patients, seed {recipe.trainval.seed}, mix {recipe.trainval.mix} "
        f"({recipe.trainval.why}); split 70/30 by patient, stratified by class, seed {recipe.split_seed}.",
        *(f"- {key} supplement: {s.patients} phantom patients, seed {s.seed}, "
          + (f"every one {s.member}" if s.member else f"mix {s.mix}")
          + f", used by the {key} classifier only, after the development cohort (not in the split, not in any "
          f"test cohort): {s.why}." for key, s in recipe.supplements.items()),
        f"- test: {recipe.test17.patients} patients, seed {recipe.test17.seed} ({recipe.test17.why}).",
        f"- held-out: {recipe.heldout.patients} patients rendered, {report['heldout']['cohort']['patients']} used, seed {recipe.heldout.seed}, mix {recipe.heldout.mix} ({recipe.heldout.why}).",
        f"- rare-class stress: {recipe.stress.patients} patients, seed {recipe.stress.seed}, mix {recipe.stress.mix} ({recipe.stress.why}).",
        f"- untouched: {recipe.untouched.patients} patients rendered, {report['untouched']['cohort']['patients']} used, seed "
        f"{recipe.untouched.seed}, mix {recipe.untouched.mix} ({recipe.untouched.why}).",
        "- Patient IDs and image content are checked to be disjoint across the cohorts.",
        "- Left out (the phantom gave a phase no picked slices, i.e. the lesion is too small to be seen on three "
        "slices of every phase, so the 12-slice protocol cannot be followed): "
        + (", ".join(f"{n}: {'; '.join(v)}" for n, v in report["skipped"].items() if v) or "none") + ".",
        "",
        *((["## Changes in this version", "", *(f"- {c}" for c in recipe.changes), ""]) if recipe.changes else []),
        "## Targets",
        "",
        "On the held-out cohort (the manifest's headline metrics) and on the untouched cohort drawn after the "
        "recipe was fixed. With the paper's mix each holds about 6 OMHT exams, so the malignant-subtype AUC "
        "moves by several hundredths with one exam (see its confidence intervals below).",
        "",
        "| metric | target | held-out | met | untouched | met |",
        "|---|---|---|---|---|---|",
        *(f"| {h[0]} | >= {h[2]:.2f} | {h[1]:.4f} | {'yes' if h[3] else 'NO'} | {u[1]:.4f} | {'yes' if u[3] else 'NO'} |"
          for h, u in zip(target_rows(held), target_rows(report["untouched"]))),
        "",
        "## Metrics (held-out cohort; the manifest's `metrics`)",
        "",
        "Test protocol: the 3 depth-consistent composites per exam, predictions averaged per exam. Classifier rows "
        "`truth` use the annotated lesion boxes (as the paper reports), rows `detected` the detector's top box "
        "(what the viewer does without a drawn box).",
        "",
        markdown(held),
        "## Metrics (17-patient test cohort)",
        "",
        markdown(t17),
        "## Untouched cohort (drawn after the recipe was fixed)",
        "",
        markdown(report["untouched"]),
        "## Rare-class stress test (equal class mix)",
        "",
        "Not a target: it shows where a model trained on a handful of OBHT and OMHT patients breaks. "
        "The per-lesion-type rows say which members it confuses.",
        "",
        markdown(report["stress"]),
        "## Build",
        "",
        f"Device: {report['device']}; torch {report['host']['torch']}, {report['host']['cpu_threads']} CPU threads. "
        + ("Training time per model as its run recorded it (s): "
           + ", ".join(f"{k} {'taken over, not trained here' if k in (report.get('reused') or {}) else v}"
                       for k, v in report["train_seconds"].items()) + ". " if report.get("train_seconds") else "")
        + "This build invocation (s; models found finished in the work folder are reused, not retrained): "
        + ", ".join(f"{k} {v}" for k, v in t.items()) + ".",
        "",
        "## Limits",
        "",
        "- The phantom's classes differ by designed enhancement kinetics, shape and texture; real tumours vary more. "
        "Metrics on the phantom show that the pipeline learns and does not leak; they say nothing about patients.",
        "- Trained without ImageNet initialisation and at small input sizes; on real data, retrain with "
        "`python -m training` on a hospital cohort and validate locally.",
        "",
    ]
    return "\n".join(lines)
