"""The main window's work with the engine process: auto-pick and analysis jobs, their results and errors."""

from __future__ import annotations

from PySide6.QtWidgets import QFileDialog

from liverview.qt import gc_pauses
from liverview.qt.settings import settings
from liverview.study.case import MAX_PICKS, Box
from liverview.study.phases import PHASES


class AnalysisJobs:
    """Starts the engine, queues requests until it and the exam are ready, applies what comes back."""

    def start_engine(self) -> None:
        """Start the engine process (torch + bundle load in the background)."""
        self.engine.start()
        self._ensure_shared()

    def _ensure_shared(self) -> None:
        """Hand the loaded exam to the engine process once it runs (shared memory, copied off the GUI thread)."""
        if self.exam is None or self._shared_token == self.load_token or self.engine.state == "stopped":
            return
        self._shared_token = self.load_token
        self._share_with_engine(self.load_token, self.exam.study)

    def _engine_state(self, state: str) -> None:
        text = {
            "starting": "engine: starting (loading torch in the background)…",
            "loading": "engine: loading the model bundle…",
            "ready": "engine: ready",
            "no-bundle": f"engine: no model bundle — {self.engine.bundle_error}. "
                         "Choose a bundle folder in Analysis > Choose model bundle folder.",
            "dead": f"engine: stopped ({self.engine.bundle_error or 'process ended'}); it restarts on the next request",
            "stopped": "engine: stopped",
        }.get(state, f"engine: {state}")
        self.engine_label.setText(text)
        if state == "no-bundle":
            self.add_problem(f"model bundle: {self.engine.bundle_error}")
            self._pending_jobs.clear()
            if self._progress_owner == "engine-wait":
                self._progress_done()
        self._update_actions()

    def _engine_bundle(self, card: dict | None) -> None:
        if card is not None:
            self.findings.set_bundle_card(card)
            if self.case is not None and self.case.findings:
                self.findings.set_findings(self.case.findings)
            self._run_pending()

    def _engine_study_ready(self, token) -> None:
        if token == self.load_token:
            self.sigEngineStudyReady.emit()
            self._run_pending()

    def _engine_can_run(self) -> bool:
        return self.engine.ready and self.engine.study_ready_token == self.load_token and self.case is not None

    def _request(self, kind: str) -> None:
        if self.case is None:
            self.statusBar().showMessage("open an exam first", 4000)
            return
        if self.engine.state == "no-bundle":
            self.show_error(f"No model bundle is loaded ({self.engine.bundle_error}). "
                            "Choose one in Analysis > Choose model bundle folder.")
            return
        if any(k == kind for k in self.jobs.values()):
            self.statusBar().showMessage(f"{kind.replace('_', '-')} is already running", 3000)
            return
        if not self._engine_can_run():
            if kind not in self._pending_jobs:
                self._pending_jobs.append(kind)
            if self.engine.state in ("stopped", "dead"):
                self.engine.start()
            self._ensure_shared()
            self._progress_start("engine-wait", "waiting for the engine and the exam…")
            return
        self._start_job(kind)

    def _run_pending(self) -> None:
        if not self._engine_can_run():
            return
        pending, self._pending_jobs = self._pending_jobs, []
        if self._progress_owner == "engine-wait":
            self._progress_done()
        for kind in pending:
            self._start_job(kind)

    def _start_job(self, kind: str) -> None:
        if kind == "analyze":
            problems = [w for w in self.case.pick_warnings()]
            if not any(self.case.picks.get(p) for p in PHASES):
                self.show_error("No slices picked: pick three slices per phase (Space) or use auto-pick (Ctrl+K).")
                return
            if problems:
                self.statusBar().showMessage("analysing with: " + "; ".join(problems), 6000)
            job = self.engine.analyze(self.case)
            label = "analysis"
        else:
            job = self.engine.auto_pick()
            label = "auto-pick"
        self.jobs[job] = kind
        self._progress_start(("job", job), f"{label}: starting")
        self._update_actions()

    def _engine_progress(self, job: int, fraction: float, message: str) -> None:
        if self._progress_owner == ("job", job):
            self._progress_set(fraction, message)

    def _engine_result(self, job: int, payload: dict) -> None:
        kind = self.jobs.pop(job, None)
        if self._progress_owner == ("job", job):
            self._progress_done()
        self._update_actions()
        if kind is None or self.case is None:
            return
        if kind == "analyze":
            boxes = [Box(**b) for b in payload.get("ai_boxes", [])]
            self.case.replace_boxes("ai", boxes)
            self.case.set_findings(payload["findings"])
            gc_pauses.freeze()  # the findings stay while the exam is open
            exam = payload["findings"]["exam"]
            self.statusBar().showMessage(
                f"analysis done: {exam['final_class']} (p malignant {exam['p_malignant']:.2f})", 8000)
            self.sigAnalysisDone.emit()
        elif kind == "auto_pick":
            self.case.set_all_picks({phase: positions[:MAX_PICKS] for phase, positions in payload["picks"].items()
                                     if self.case.volume(phase) is not None})
            self.lesion_extent = tuple(payload["extent"])
            self.picks.set_case(self.case, self.lesion_extent)
            ps = self.case.picks
            first = next((ps[p][len(ps[p]) // 2] for p in (self.grid.active, *PHASES) if ps.get(p)), None)
            if first is not None:
                self.grid.set_position(first)
            self.statusBar().showMessage(
                f"auto-pick: lesion found at {payload['extent'][0]:.0f}…{payload['extent'][1]:.0f} mm; "
                "three slices picked per phase", 8000)
            self.sigAutoPickDone.emit()

    def _engine_error(self, job: int, message: str) -> None:
        kind = self.jobs.pop(job, None)
        if self._progress_owner == ("job", job):
            self._progress_done()
        self._update_actions()
        what = {"analyze": "Analysis", "auto_pick": "Auto-pick"}.get(kind or "", "Engine")
        self.show_error(f"{what} failed: {message}")
        self.sigJobFailed.emit(message)

    def _engine_cancelled(self, job: int) -> None:
        self.jobs.pop(job, None)
        if self._progress_owner == ("job", job):
            self._progress_done()
        self._update_actions()
        self.statusBar().showMessage("cancelled", 4000)

    def choose_bundle_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose a model bundle folder (with manifest.json)")
        if folder:
            self.set_bundle(folder)

    def set_bundle(self, folder: str) -> None:
        s = settings()
        s.setValue("engine/bundle", folder)
        s.sync()
        self.engine.set_bundle(folder)

