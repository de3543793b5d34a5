"""The engine's entry point: load a bundle once, then `analyze(case)` -> Findings (detection, two stages, CAM)."""

from __future__ import annotations

import datetime as _dt
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from liverview.engine.bundle import Bundle, load_bundle
from liverview.engine.compat import check_case, intensity_check, missing_phases
from liverview.engine.default_bundle import default_bundle_dir
from liverview.engine.detection import ai_boxes, phase_boxes, run_detector, to_detections
from liverview.engine.diagnosis import Classifier, StageResult, attribution_fractions, load_classifier, run_stage
from liverview.engine.errors import AnalysisCancelled, AnalysisError, BundleError  # noqa: F401 - AnalysisCancelled: old import path
from liverview.engine.roi import classifier_input
from liverview.engine.yolo import detector_from_state
from liverview.findings import (
    CLASSES,
    GROUPS,
    CompositeFinding,
    ExamFinding,
    Explanation,
    Findings,
    grid_to_phase,
    square_to_grid,
)
from liverview.study.case import Case
from liverview.study.composite import Composite, case_composites
from liverview.study.inputs import analysis_inputs, inputs_digest
from liverview.study.phases import PHASES

Progress = Callable[[float, str], None]
Cancel = Callable[[], bool]

BRANCHES = GROUPS


def bundle_windows(manifest: dict) -> dict[str, tuple[float, float]]:
    return {p: (float(manifest["windows"][p][0]), float(manifest["windows"][p][1])) for p in PHASES}


def engine_composites(case: Case, windows: dict[str, tuple[float, float]], mode: str = "depth") -> list[Composite]:
    """The case's composites (the shared builder), windowed with the bundle's windows."""
    return case_composites(case, mode, windows=windows)


class Engine:
    """A loaded bundle: detector and the three classifiers, verified once, reused for every case.

    One analysis at a time per Engine (Grad-CAM hooks sit on the shared networks): run it in
    one worker thread or process.
    """

    def __init__(self, bundle_dir: str | os.PathLike | None = None) -> None:
        t0 = time.perf_counter()
        folder = Path(bundle_dir) if bundle_dir is not None else default_bundle_dir()
        if bundle_dir is None and not folder.is_dir():
            raise BundleError(
                f"{folder}: no default model bundle here; train one with the training module or pass a bundle folder"
            )
        self.bundle: Bundle = load_bundle(folder)
        det = self.bundle.model("detector")
        try:
            self.detector = detector_from_state(det.get("yaml") or det["arch"], self.bundle.state_dict("detector"),
                                                int(det["channels"]), int(det.get("nc", 1)))
        except (RuntimeError, KeyError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BundleError(f"{folder / det['file']}: detector weights do not fit {det['arch']} ({first})") from None
        self.classifiers: dict[str, Classifier] = {k: load_classifier(self.bundle, k) for k in ("stage1", *BRANCHES)}
        self.bundle.release()
        self.windows = bundle_windows(self.bundle.manifest)
        self.load_seconds = time.perf_counter() - t0

    @property
    def manifest(self) -> dict:
        return self.bundle.manifest

    def describe(self) -> dict:
        return self.bundle.describe()

    # ------------------------------------------------------------------------------------
    def check(self, case: Case, assume_windows: bool = False, allow_missing: bool = False, allow_doubtful: bool = False,
              accept_guessed_phases: bool = False) -> list[str]:
        """Raise AnalysisError for a case that cannot be analysed; return the warnings it goes on with
        (what the reader accepted) and notes on what converts."""
        warnings = check_case(case, allow_missing, allow_doubtful, accept_guessed_phases)
        return warnings + intensity_check(case.study, self.manifest, assume_windows)

    def analyze(
        self,
        case: Case,
        progress: Progress | None = None,
        cancel: Cancel | None = None,
        mode: str = "depth",
        assume_windows: bool = False,
        apply: bool = False,
        allow_missing: bool = False,
        allow_doubtful: bool = False,
        accept_guessed_phases: bool = False,
    ) -> Findings:
        """Detect, classify (two stages) and explain every composite of the case's picks.

        ROI per composite: the readers' box (user, or AI accepted by a reader) else the top
        detection else the whole image. Stage 2 runs both subtype models on every composite
        (the four class probabilities need both); Grad-CAM explains stage 1 and the subtype
        model of the exam-level stage-1 call, each for its predicted class per composite.

        `progress(fraction, message)` is called between steps and `cancel()` checked there; a
        cancel raises AnalysisCancelled and leaves the case untouched. A study without all four
        phases raises MissingPhasesError unless `allow_missing` (they become zero channels). With `apply` the findings
        and AI boxes are written into the case (do that on the GUI thread: `apply_findings`).
        """
        timings: dict[str, float] = {}
        t_start = time.perf_counter()

        def step(fraction: float, message: str) -> None:
            if cancel is not None and cancel():
                raise AnalysisCancelled(f"analysis cancelled ({message})")
            if progress is not None:
                progress(fraction, message)

        step(0.0, "checking the case")
        notes = self.check(case, assume_windows, allow_missing, allow_doubtful, accept_guessed_phases)
        study = case.study
        try:
            comps = engine_composites(case, self.windows, mode)
        except ValueError as exc:
            raise AnalysisError(str(exc)) from None
        used = tuple(p for p in PHASES if any(p in c.phases_used for c in comps))
        missing = tuple(p for p in PHASES if p not in used)
        for p in missing:
            why = "no volume" if p in missing_phases(study) else "no picked slices"
            notes.append(f"phase {p} missing ({why}): entered as a zero channel")
        timings["composites"] = time.perf_counter() - t_start

        step(0.1, f"detecting lesions on {len(comps)} composites")
        t = time.perf_counter()
        found = run_detector(self.detector, self.manifest["models"]["detector"], [c.image for c in comps])
        detections = [to_detections(study, c, f) for c, f in zip(comps, found)]
        timings["detection"] = time.perf_counter() - t

        roi = []
        for c, dets in zip(comps, detections):
            if c.box is not None:
                roi.append(("user", c.box))
            elif dets:
                roi.append(("detected", dets[0].box))
            else:
                roi.append(("none", None))
        if any(src == "none" for src, _ in roi):
            notes.append("no lesion box on some composites: the whole image was classified there")

        step(0.35, "stage 1: benign or malignant")
        t = time.perf_counter()
        inputs: dict[tuple[int, float], tuple[torch.Tensor, list]] = {}

        def batch_for(clf: Classifier):
            key = (clf.input_size, clf.margin)
            if key not in inputs:
                xs, squares = zip(*(classifier_input(c.image, box, clf.margin, clf.input_size) for c, (_, box) in zip(comps, roi)))
                inputs[key] = (torch.stack(xs), list(squares))
            return inputs[key]

        s1 = self.classifiers["stage1"]
        threshold = float(s1.entry["threshold"])
        x1, sq1 = batch_for(s1)
        r1 = run_stage(s1, x1, explain=True, threshold=threshold)
        p_mal = r1.probs[:, 1].astype(np.float64)
        exam_p_mal = float(p_mal.mean())
        exam_call = "malignant" if exam_p_mal >= threshold else "benign"
        timings["stage1"] = time.perf_counter() - t

        step(0.6, f"stage 2: {exam_call} subtype")
        t = time.perf_counter()
        r2: dict[str, StageResult] = {}
        sq2: dict[str, list] = {}
        for branch in BRANCHES:
            clf = self.classifiers[branch]
            x, sq = batch_for(clf)
            r2[branch] = run_stage(clf, x, explain=(branch == exam_call))
            sq2[branch] = sq
        timings["stage2"] = time.perf_counter() - t

        step(0.85, "registering heatmaps to the slices")
        t = time.perf_counter()
        results = []
        for i, c in enumerate(comps):
            pm = float(p_mal[i])
            cond = {
                "benign": {"HH": float(r2["benign"].probs[i, 0]), "OBHT": float(r2["benign"].probs[i, 1])},
                "malignant": {"HB": float(r2["malignant"].probs[i, 0]), "OMHT": float(r2["malignant"].probs[i, 1])},
            }
            probs = {
                "HH": (1 - pm) * cond["benign"]["HH"],
                "OBHT": (1 - pm) * cond["benign"]["OBHT"],
                "HB": pm * cond["malignant"]["HB"],
                "OMHT": pm * cond["malignant"]["OMHT"],
            }
            explanations = {
                "stage1": self._explanation(study, c, "stage1", s1, r1, i, sq1[i]),
                "stage2": self._explanation(study, c, "stage2", self.classifiers[exam_call], r2[exam_call], i, sq2[exam_call][i]),
            }
            src, box = roi[i]
            results.append(
                CompositeFinding(
                    index=i,
                    picks=dict(c.picks),
                    positions={p: float(c.positions[p]) for p in c.phases_used},
                    slice_index={p: int(study.volumes[p].index_at(c.positions[p])) for p in c.phases_used},
                    phases_used=tuple(c.phases_used),
                    shape=tuple(int(s) for s in c.image.shape[-2:]),
                    scale={p: tuple(float(s) for s in c.scale[p]) for p in c.phases_used},
                    detections=detections[i],
                    roi_source=src,
                    roi_box=None if box is None else tuple(float(v) for v in box),
                    roi_phases={} if box is None else phase_boxes(study, c, box),
                    p_malignant=pm,
                    stage1_call="malignant" if pm >= threshold else "benign",
                    stage2=cond,
                    probabilities=probs,
                    explanations=explanations,
                )
            )
        exam_cond = {
            g: {k: float(np.mean([r.stage2[g][k] for r in results])) for k in results[0].stage2[g]} for g in BRANCHES
        }
        exam_probs = {k: float(np.mean([r.probabilities[k] for r in results])) for k in CLASSES}
        exam = ExamFinding(
            p_malignant=exam_p_mal,
            threshold=threshold,
            stage1_call=exam_call,
            stage2=exam_cond,
            stage2_call=max(exam_cond[exam_call], key=exam_cond[exam_call].get),
            probabilities=exam_probs,
            final_class=max(CLASSES, key=lambda k: exam_probs[k]),
        )
        if not exam.consistent:
            notes.append(
                f"final class {exam.final_class} (argmax of the four) is not in the stage-1 group {exam_call}"
            )
        notes.extend(self._notices())
        timings["explain"] = time.perf_counter() - t
        timings["total"] = time.perf_counter() - t_start
        findings = Findings(
            bundle=self.describe(),
            case_id=case.case_id,
            created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            mode=mode,
            phases_used=used,
            phases_missing=missing,
            composites=results,
            exam=exam,
            notes=notes,
            timings=timings,
            computed_from={"digest": inputs_digest(case), **analysis_inputs(case)},
        )
        step(1.0, "done")
        if apply:
            apply_findings(case, findings)
        return findings

    def auto_pick(self, study, cancel: Cancel | None = None, reference: str = "V", progress: Progress | None = None):
        """Propose three slices per phase around the dominant lesion (see autopick.auto_pick)."""
        from liverview.engine.autopick import auto_pick

        return auto_pick(
            study, self.detector, self.manifest["models"]["detector"], self.windows, reference, cancel=cancel, progress=progress
        )

    def _notices(self) -> list[str]:
        notice = self.manifest.get("research_notice")
        return [str(notice)] if notice else []

    @staticmethod
    def _explanation(study, comp: Composite, stage: str, clf: Classifier, res: StageResult, i: int, square) -> Explanation:
        grid = square_to_grid(res.cams[i], square, comp.image.shape[-2:])
        maps = {p: grid_to_phase(grid, study.volumes[p].pixels.shape[1:]) for p in comp.phases_used}
        return Explanation(
            stage=stage,
            model=clf.key,
            target_class=clf.classes[res.target[i]],
            roi_cam=res.cams[i],
            square=square,
            attribution=attribution_fractions(res.contribution[i], comp.phases_used),
            maps=maps,
        )


def apply_findings(case: Case, findings: Findings, boxes: bool = True) -> None:
    """Store the findings in the case and, with `boxes`, the detections as unaccepted AI boxes."""
    if boxes:
        case.replace_boxes("ai", ai_boxes(case, findings.composites))
    case.set_findings(findings.to_dict())
