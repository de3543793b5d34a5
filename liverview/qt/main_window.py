"""The main window: opening exams, the four-phase grid, picks, boxes, analysis, findings and CAM overlays."""

from __future__ import annotations

import getpass
import hashlib
import logging
import os
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import (
    QCheckBox, QComboBox, QDockWidget, QFileDialog, QLabel, QListWidget, QMainWindow, QMessageBox,
    QProgressBar, QPushButton, QScrollArea, QTextBrowser, QDialog, QVBoxLayout, QWidget,
)

from liverview import RESEARCH_NOTICE
from liverview.qt import box_edits, gc_pauses, keyboard
from liverview.qt.cam_overlay import CamSource
from liverview.qt.cam_panel import CamPanel
from liverview.qt.case_saver import CaseSaver
from liverview.qt.engine_client import EngineClient
from liverview.qt.findings_panel import FindingsPanel
from liverview.qt.paths import case_file
from liverview.qt.phase_dialog import PhaseDialog, rows_from_candidates
from liverview.qt.phase_grid import LAYOUTS, PRESETS, PhaseGrid
from liverview.qt.pick_strip import PickStrip
from liverview.qt.settings import add_recent_exam, clear_recent_exams, recent_exams, settings
from liverview.qt.workers import Task, TaskRunner
from liverview.study.case import MAX_PICKS, Box, Case, Study
from liverview.study.persist import CaseFileError, load_case
from liverview.study.phases import PHASES

log = logging.getLogger(__name__)


class _Relay(QObject):
    """Carries the early Study from the loader thread to the GUI thread."""

    study = Signal(int, object)


def case_key(study: Study) -> str:
    if study.study_uid:
        return study.study_uid
    return "path-" + hashlib.sha1(os.path.abspath(study.path or "").encode()).hexdigest()[:16]


class MainWindow(QMainWindow):
    sigStudyShown = Signal()  # the grid shows a new exam (its slices may still be decoding)
    sigExamLoaded = Signal()  # every slice decoded, problems listed
    sigEngineStudyReady = Signal()  # the engine process has the exam
    sigAnalysisDone = Signal()
    sigAutoPickDone = Signal()
    sigJobFailed = Signal(str)

    def __init__(self, bundle_dir: str | None = None, engine_threads: int = 0) -> None:
        super().__init__()
        self.setWindowTitle(f"liverview — {RESEARCH_NOTICE}")
        self.resize(1500, 950)
        self.setAcceptDrops(True)
        self.user = getpass.getuser() if hasattr(os, "getuid") else "reader"
        self.runner = TaskRunner(self)
        stored_bundle = settings().value("engine/bundle", "")
        self.engine = EngineClient(bundle_dir or (str(stored_bundle) if stored_bundle else None), engine_threads, self)
        self.engine.sigState.connect(self._engine_state)
        self.engine.sigBundle.connect(self._engine_bundle)
        self.engine.sigProgress.connect(self._engine_progress)
        self.engine.sigResult.connect(self._engine_result)
        self.engine.sigError.connect(self._engine_error)
        self.engine.sigCancelled.connect(self._engine_cancelled)
        self.engine.sigStudyReady.connect(self._engine_study_ready)

        self.path: str | None = None
        self.exam = None
        self.study: Study | None = None
        self.case: Case | None = None
        self.saver: CaseSaver | None = None
        self.case_path: Path | None = None
        self.case_restored = False
        self.phase_override: dict[str, str] | None = None
        self.load_token = 0
        self.load_task: Task | None = None
        self.loading = False
        self.cam = CamSource(None)
        self.lesion_extent: tuple[float, float] | None = None
        self.jobs: dict[int, str] = {}
        self._pending_jobs: list[str] = []
        self.last_error = ""
        self._relay = _Relay(self)
        self._relay.study.connect(self._study_arrived)
        self._progress_owner: object = None
        self._shared_token: int | None = None
        self.preload_task: Task | None = None

        self.grid = PhaseGrid()
        self.grid.cam_lookup = self.cam.lookup
        self.setCentralWidget(self.grid)
        self.grid.sigHover.connect(self._hover)
        self.grid.sigBoxDrawn.connect(self._box_drawn)
        self.grid.sigBoxChanged.connect(self._box_changed)
        self.grid.sigBoxSelected.connect(self._box_selected)
        self.grid.sigMessage.connect(lambda m: self.statusBar().showMessage(m, 5000))
        self.grid.sigActiveChanged.connect(lambda p: self.statusBar().showMessage(f"active phase: {p}", 2000))
        self.grid.sigWindowChanged.connect(self._sync_window_widgets)

        self._build_docks()
        self._build_status()
        self._build_actions()
        self._build_menus_and_toolbar()
        self.ready_timer = QTimer(self)
        self.ready_timer.setInterval(120)
        self.ready_timer.timeout.connect(self._refresh_ready)
        self.cine_timer = QTimer(self)
        self.cine_timer.setInterval(100)
        self.cine_timer.timeout.connect(self._cine_step)
        self._update_actions()
        gc_pauses.freeze()  # Qt, pyqtgraph and the widgets live as long as the window

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self.preload_task is None:
            QTimer.singleShot(300, self._preload)

    def _preload(self) -> None:
        """Import the exam loader (pydicom & co., ~0.5-1 s) in the background once the window shows,
        so opening the first exam does not wait for it."""
        if self.preload_task is not None:
            return

        def work(progress, cancelled):
            import liverview.io.loader  # noqa: F401

            gc_pauses.freeze()
            return True

        self.preload_task = self.runner.start(Task(work, "loading the DICOM reader"))

    # ---- construction -----------------------------------------------------------------------
    def _build_docks(self) -> None:
        self.picks = PickStrip()
        self.picks.sigJump.connect(self.jump_to)
        self.picks.sigPick.connect(self.toggle_pick)
        self.picks.sigAutoPick.connect(self.auto_pick)
        dock = QDockWidget("Picked slices", self)
        dock.setObjectName("picks")
        dock.setWidget(self.picks)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, dock)
        self.picks_dock = dock

        self.cam_panel = CamPanel()
        self.cam_panel.sigVisible.connect(self.grid.set_cam_visible)
        self.cam_panel.sigOpacity.connect(self._cam_opacity)
        self.cam_panel.sigStage.connect(self._cam_stage)
        self.cam_panel.sigCmap.connect(self._cam_cmap)
        self.findings = FindingsPanel()
        holder = QWidget()
        lay = QVBoxLayout(holder)
        lay.setContentsMargins(0, 0, 0, 0)
        self.analyze_button = QPushButton("Run analysis (Ctrl+R)")
        self.analyze_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.analyze_button.clicked.connect(self.run_analysis)
        self.engine_label = QLabel("engine: not started")
        self.engine_label.setWordWrap(True)
        lay.addWidget(self.analyze_button)
        lay.addWidget(self.engine_label)
        lay.addWidget(self.cam_panel)
        lay.addWidget(self.findings)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(holder)
        dock = QDockWidget("Analysis", self)
        dock.setObjectName("findings")
        dock.setWidget(scroll)
        dock.setMinimumWidth(430)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
        self.findings_dock = dock

        self.problems = QListWidget()
        self.problems.setWordWrap(True)
        self.problems.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # item views swallow letter and Space shortcuts
        dock = QDockWidget("Problems", self)
        dock.setObjectName("problems")
        dock.setWidget(self.problems)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, dock)
        self.problems_dock = dock
        self.resizeDocks([self.problems_dock], [90], Qt.Orientation.Vertical)

    def _build_status(self) -> None:
        bar = self.statusBar()
        self.readout = QLabel("")
        self.readout.setMinimumWidth(520)
        bar.addWidget(self.readout, 1)
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(260)
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(True)
        self.progress.hide()
        bar.addPermanentWidget(self.progress)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.cancel_button.clicked.connect(self.cancel_work)
        self.cancel_button.hide()
        bar.addPermanentWidget(self.cancel_button)

    def _build_actions(self) -> None:
        handlers = {
            "open_folder": self.open_folder_dialog,
            "open_file": self.open_file_dialog,
            "phase_dialog": self.show_phase_dialog,
            "quit": self.close,
            "prev_slice": lambda: self.grid.step(-1),
            "next_slice": lambda: self.grid.step(1),
            "prev_10": lambda: self.grid.step(-10),
            "next_10": lambda: self.grid.step(10),
            "first_slice": lambda: self.grid.go_to_end(False),
            "last_slice": lambda: self.grid.go_to_end(True),
            "cine": self.toggle_cine,
            "next_phase": self._next_phase,
            "phase_P": lambda: self.grid.set_active("P"),
            "phase_A": lambda: self.grid.set_active("A"),
            "phase_V": lambda: self.grid.set_active("V"),
            "phase_D": lambda: self.grid.set_active("D"),
            "layout": lambda: self.set_layout(self.grid.cycle_layout()),
            "reset_view": self.grid.reset_view,
            "window_next": lambda: self.set_preset(self.grid.cycle_preset()),
            "link_windows": lambda: self.link_box.toggle(),
            "cam_toggle": lambda: self.cam_panel.toggle.toggle(),
            "cam_stage": self.cam_panel.cycle_stage,
            "cam_less": lambda: self.cam_panel.step_opacity(-10),
            "cam_more": lambda: self.cam_panel.step_opacity(10),
            "pick": self.toggle_pick,
            "pick_all": self.pick_all,
            "auto_pick": self.auto_pick,
            "draw_box": None,  # checkable, below
            "delete_box": self.delete_box,
            "copy_box": self.copy_box,
            "accept_box": self.accept_box,
            "accept_all": self.accept_all,
            "undo": self.undo,
            "redo": self.redo,
            "analyze": self.run_analysis,
            "cancel": self.cancel_work,
            "keyboard_map": self.show_keyboard_map,
        }
        self.actions: dict[str, QAction] = {}
        for entry in keyboard.KEYS:
            if not entry.action:
                continue
            act = QAction(entry.text, self)
            act.setObjectName(entry.action)
            act.setShortcuts([QKeySequence(k) for k in entry.keys])
            act.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
            handler = handlers[entry.action]
            if handler is not None:
                act.triggered.connect(lambda _=False, h=handler: h())
            self.addAction(act)
            self.actions[entry.action] = act
        draw = self.actions["draw_box"]
        draw.setCheckable(True)
        draw.toggled.connect(self.grid.set_draw_mode)
        self.actions["keyboard_map"].setMenuRole(QAction.MenuRole.NoRole)

    def _build_menus_and_toolbar(self) -> None:
        a = self.actions
        m = self.menuBar().addMenu("&File")
        m.addAction(a["open_folder"])
        m.addAction(a["open_file"])
        self.recent_menu = m.addMenu("Recent exams")
        self.recent_menu.aboutToShow.connect(self._fill_recent)
        demo = QAction("Open the demo phantom exam", self)
        demo.triggered.connect(self.open_demo)
        m.addAction(demo)
        m.addSeparator()
        m.addAction(a["quit"])

        m = self.menuBar().addMenu("&Exam")
        m.addAction(a["phase_dialog"])

        m = self.menuBar().addMenu("&View")
        self.layout_group = QActionGroup(self)
        self.layout_actions = {}
        for mode in LAYOUTS:
            act = QAction(f"Layout {mode.replace('x', ' x ')}", self, checkable=True)
            act.triggered.connect(lambda _=False, mode=mode: self.set_layout(mode))
            self.layout_group.addAction(act)
            m.addAction(act)
            self.layout_actions[mode] = act
        self.layout_actions[self.grid.layout_mode].setChecked(True)
        m.addAction(a["layout"])
        m.addSeparator()
        for key in ("prev_slice", "next_slice", "cine", "reset_view", "window_next", "link_windows"):
            m.addAction(a[key])
        m.addSeparator()
        for key in ("cam_toggle", "cam_stage", "cam_less", "cam_more"):
            m.addAction(a[key])

        m = self.menuBar().addMenu("&Picks and boxes")
        for key in ("pick", "pick_all", "auto_pick", None, "draw_box", "delete_box", "copy_box", "accept_box",
                    "accept_all", None, "undo", "redo"):
            if key is None:
                m.addSeparator()
            else:
                m.addAction(a[key])

        m = self.menuBar().addMenu("&Analysis")
        m.addAction(a["analyze"])
        m.addAction(a["cancel"])
        choose = QAction("Choose model bundle folder…", self)
        choose.triggered.connect(self.choose_bundle_dialog)
        m.addAction(choose)
        self.choose_bundle_action = choose

        m = self.menuBar().addMenu("&Help")
        m.addAction(a["keyboard_map"])
        about = QAction("About liverview", self)
        about.triggered.connect(self.show_about)
        m.addAction(about)

        tb = self.addToolBar("Main")
        tb.setObjectName("main-toolbar")
        tb.addAction(a["open_folder"])
        tb.addSeparator()
        tb.addWidget(QLabel(" Layout "))
        self.layout_combo = QComboBox()
        self.layout_combo.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.layout_combo.addItems(list(LAYOUTS))
        self.layout_combo.currentTextChanged.connect(self.set_layout)
        tb.addWidget(self.layout_combo)
        tb.addWidget(QLabel(" Window "))
        self.preset_combo = QComboBox()
        self.preset_combo.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.preset_combo.addItems(list(PRESETS) + ["custom"])
        self.preset_combo.model().item(len(PRESETS)).setEnabled(False)
        self.preset_combo.currentTextChanged.connect(lambda name: name in PRESETS and self.set_preset(name))
        tb.addWidget(self.preset_combo)
        self.link_box = QCheckBox("link windows")
        self.link_box.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.link_box.setChecked(self.grid.link_windows)
        self.link_box.toggled.connect(self._link_windows)
        tb.addWidget(self.link_box)
        tb.addSeparator()
        tb.addAction(a["cine"])
        tb.addAction(a["pick"])
        tb.addAction(a["auto_pick"])
        tb.addAction(a["draw_box"])
        tb.addAction(a["undo"])
        tb.addAction(a["redo"])
        tb.addSeparator()
        tb.addAction(a["analyze"])
        tb.addAction(a["cam_toggle"])
        for act, text in ((a["pick"], "Pick"), (a["auto_pick"], "Auto-pick"), (a["draw_box"], "Draw box"),
                          (a["analyze"], "Analyze"), (a["cam_toggle"], "CAM"), (a["cine"], "Cine"),
                          (a["open_folder"], "Open"), (a["undo"], "Undo"), (a["redo"], "Redo")):
            act.setIconText(text)
        for w in tb.findChildren(QWidget):
            w.setFocusPolicy(Qt.FocusPolicy.NoFocus)

    # ---- engine -------------------------------------------------------------------------------
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
            for phase, positions in payload["picks"].items():
                if self.case.volume(phase) is not None:
                    self.case.set_picks(phase, positions[:MAX_PICKS])
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

    # ---- opening --------------------------------------------------------------------------------
    def open_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open an exam folder")
        if folder:
            self.open_path(folder)

    def open_file_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open a DICOMDIR or zip", "", "Exams (DICOMDIR *.zip *.dcm);;All files (*)")
        if path:
            self.open_path(path)

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        items = recent_exams()
        for path in items:
            act = self.recent_menu.addAction(path)
            act.triggered.connect(lambda _=False, p=path: self.open_path(p))
        if items:
            self.recent_menu.addSeparator()
            self.recent_menu.addAction("Clear the list", clear_recent_exams)
        else:
            self.recent_menu.addAction("(none yet)").setEnabled(False)

    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.open_path(paths[0])

    def open_demo(self) -> None:
        from liverview.qt.demo import ensure_demo_exam

        task = Task(lambda progress, cancelled: ensure_demo_exam(progress, cancelled), "generating the demo exam")
        task.signals.progress.connect(lambda f, m: self._progress_owner == task and self._progress_set(f, m))
        task.signals.done.connect(lambda path: self.open_path(str(path)))
        task.signals.failed.connect(lambda msg: self.show_error(f"The demo exam could not be generated: {msg}"))
        task.signals.finished.connect(lambda: self._progress_owner == task and self._progress_done())
        self._progress_start(task, "generating the demo phantom exam (once)…")
        self.runner.start(task)

    def open_path(self, path: str, phases: dict[str, str] | None = None) -> None:
        """Load an exam (folder, DICOMDIR, zip) in a worker; the grid shows it as slices arrive."""
        if self.load_task is not None and self.load_task.running:
            self.load_task.cancel()
        self.close_exam()
        self.path = str(path)
        self.phase_override = phases
        self.load_token += 1
        token = self.load_token
        relay = self._relay

        def work(progress, cancelled):
            from liverview.io.loader import load_exam  # pydicom imports here, off the GUI thread

            gc_pauses.freeze()  # the freshly imported modules are long-lived
            with gc_pauses.paused():
                exam = load_exam(
                    path,
                    phases=phases,
                    progress=lambda done, total, msg: progress(done / max(total, 1), msg),
                    cancel=cancelled,
                    on_study=lambda study: relay.study.emit(token, study),
                )
                gc_pauses.freeze()  # the exam's headers live as long as it is open
                return exam

        task = Task(work, f"loading {Path(path).name}")
        task.signals.progress.connect(lambda f, m: self._progress_owner == task and self._progress_set(f, m))
        task.signals.done.connect(lambda exam: self._exam_loaded(token, exam))
        task.signals.failed.connect(lambda msg: self._load_failed(token, msg))
        task.signals.cancelled.connect(lambda: token == self.load_token and self.statusBar().showMessage("loading cancelled", 4000))
        task.signals.finished.connect(lambda: self._load_finished(token, task))
        self.load_task = task
        self.loading = True
        self._progress_start(task, f"opening {path}")
        self.ready_timer.start()
        self.runner.start(task)
        self._update_actions()

    def _load_finished(self, token: int, task: Task) -> None:
        if self._progress_owner == task:
            self._progress_done()
        if token == self.load_token:
            self.loading = False
            self.ready_timer.stop()
            self._refresh_ready()
        self._update_actions()

    def _load_failed(self, token: int, message: str) -> None:
        if token != self.load_token:
            return
        self.show_error(f"Could not open the exam: {message}")

    def _study_arrived(self, token: int, study: Study) -> None:
        if token != self.load_token:
            return
        self._show_study(study)

    def _show_study(self, study: Study) -> None:
        """Show a study (slices may still be decoding) with its case file restored."""
        self.study = study
        self.lesion_extent = None
        path = case_file(case_key(study))
        case = None
        self.case_restored = False
        if path.exists():
            try:
                case = load_case(path, study)
                self.case_restored = True
            except CaseFileError as exc:
                bad = path.with_name(path.stem + f".unreadable-{int(time.time())}.json")
                path.rename(bad)
                self.add_problem(f"{exc} (kept as {bad.name}; starting a new case)")
        if case is None:
            case = Case(study)
        self.case = case
        self.case_path = path
        self.saver = CaseSaver(case, path, self)
        self.saver.sigFailed.connect(self.show_error)
        case.events.connect(self._case_event)
        self._new_cam_source()
        self.grid.set_case(case, {p: s.description for p, s in study.sources.items()})
        self.picks.set_case(case)
        self.findings.set_findings(case.findings)
        self.cam_panel.set_available(self.cam.stages())
        title = study.patient_id or Path(study.path or self.path or "").name
        self.setWindowTitle(f"liverview — {title} — {RESEARCH_NOTICE}")
        if self.case_restored:
            self.statusBar().showMessage(f"restored your picks and boxes from {path}", 6000)
        self._update_actions()
        self.sigStudyShown.emit()

    def _exam_loaded(self, token: int, exam) -> None:
        if token != self.load_token:
            return
        self.exam = exam
        if self.study is not exam.study:
            self._show_study(exam.study)
        for p in exam.problems:
            self.add_problem(p)
        if exam.case_seed is not None and not self.case_restored and not self.case.boxes and not any(self.case.picks.values()):
            exam.case_seed.apply(self.case)
        add_recent_exam(self.path)
        self._refresh_ready()
        self.picks.refresh()
        if self._restore_phase_override(exam):
            return
        self._ensure_shared()
        n = len(exam.candidates or [])
        if n > len(PHASES):
            self.add_problem(f"{n} candidate series: choose the four phases in Exam > Phases (Ctrl+Shift+P)")
            self.show_phase_dialog()
        self.statusBar().showMessage(f"loaded {self.path}", 5000)
        self.sigExamLoaded.emit()

    def _restore_phase_override(self, exam) -> bool:
        """Reload with the phase assignment the user made before (saved in the case file)."""
        if self.phase_override is not None or not self.case_restored or self.case_path is None:
            return False
        import json

        try:
            saved = json.loads(self.case_path.read_text(encoding="utf-8")).get("study") or {}
        except (OSError, ValueError):
            return False
        phases = {p: s.get("series_uid") for p, s in (saved.get("phases") or {}).items() if s.get("series_uid")}
        if not any(s.get("overridden") for s in (saved.get("phases") or {}).values()):
            return False
        current = {p: s.series_uid for p, s in exam.study.sources.items()}
        if phases == current:
            return False
        self.open_path(self.path, phases)
        self.add_problem("phase assignment restored from your case file (you had reassigned phases)")
        return True

    def _share_with_engine(self, token: int, study: Study) -> None:
        engine = self.engine
        task = Task(lambda progress, cancelled: engine.share_study(study), "sending the exam to the engine")
        task.signals.done.connect(lambda shared: self._shared(token, shared))
        task.signals.failed.connect(lambda msg: self.show_error(f"Could not hand the exam to the engine: {msg}"))
        self.runner.start(task)

    def _shared(self, token: int, shared) -> None:
        if token != self.load_token:
            for shm in shared[0]:
                shm.close()
                shm.unlink()
            return
        self.engine.send_study(token, shared)

    def close_exam(self) -> None:
        if self.saver is not None:
            self.saver.close()
            self.saver = None
        if self.case is not None:
            self.case.events.disconnect(self._case_event)
        self.case = None
        self.study = None
        self.exam = None
        self.problems.clear()
        self.cam = CamSource(None)
        self.grid.cam_lookup = self.cam.lookup
        self.grid.set_case(None)
        self.picks.set_case(None)
        self.findings.set_findings(None)
        self.stop_cine()

    def show_phase_dialog(self) -> PhaseDialog | None:
        if self.exam is None:
            self.statusBar().showMessage("the exam is still loading" if self.loading else "open an exam first", 4000)
            return None
        rows = rows_from_candidates(self.exam.candidates)
        current = {p: s.series_uid for p, s in self.exam.study.sources.items()}
        dialog = PhaseDialog(rows, current, self)
        dialog.accepted.connect(lambda: self._phases_chosen(dialog.assignment(), current))
        dialog.finished.connect(lambda _result: self.activateWindow())  # keys go back to the viewer
        dialog.open()
        self.phase_dialog = dialog
        return dialog

    def _phases_chosen(self, assignment: dict[str, str], current: dict[str, str]) -> None:
        if assignment != current and self.path:
            self.open_path(self.path, assignment)

    # ---- case edits ---------------------------------------------------------------------------
    def _case_event(self, kind: str, payload: dict) -> None:
        if kind in ("picks", "boxes", "restored"):
            if self.grid.selected_box and not any(b.id == self.grid.selected_box for b in self.case.boxes):
                self.grid.selected_box = None
            self.grid.refresh()
            self.picks.refresh()
        elif kind == "findings":
            self._new_cam_source()
            self.findings.set_findings(self.case.findings)
            self.cam_panel.set_available(self.cam.stages())
            self.grid.refresh()
        self._update_actions()

    def _new_cam_source(self) -> None:
        """CAMs of the case's findings, looked up by slice of each phase."""
        views = self.grid.views

        def slice_index(phase: str, position: float) -> int | None:
            view = views.get(phase)
            return view.index_for(position) if view is not None and view.volume is not None else None

        findings = self.case.findings if self.case is not None else None
        self.cam = CamSource(findings, self.cam_panel.current_stage(), self.cam_panel.cmap.currentText(), slice_index,
                             self.cam_panel.opacity.value() / 100.0)
        self.grid.cam_lookup = self.cam.lookup

    def _active_position(self) -> tuple[str, float] | None:
        v = self.grid.views[self.grid.active]
        if self.case is None or v.volume is None or v.position is None:
            return None
        return v.phase, v.position

    def toggle_pick(self) -> None:
        at = self._active_position()
        if at is None:
            return
        phase, pos = at
        if self.case.is_picked(phase, pos):
            self.case.remove_pick(phase, pos)
        elif not self.case.add_pick(phase, pos):
            self.statusBar().showMessage(f"phase {phase} already has {MAX_PICKS} picks: unpick one first", 5000)

    def pick_all(self) -> None:
        if self.case is None:
            return
        for p in PHASES:
            v = self.grid.views[p]
            if v.volume is None:
                continue
            pos = float(v.positions[v.index_for(self.grid.position)])
            if not self.case.is_picked(p, pos) and not self.case.add_pick(p, pos):
                self.statusBar().showMessage(f"phase {p} already has {MAX_PICKS} picks", 4000)

    def auto_pick(self) -> None:
        self._request("auto_pick")

    def run_analysis(self) -> None:
        self._request("analyze")

    def _box_drawn(self, phase: str, position: float, rect: tuple) -> None:
        if self.case is None:
            return
        box = self.case.add_box(Box(phase, position, *rect, origin="user", author=self.user))
        self.grid.select_box(box.id)

    def _box_changed(self, box_id: str, rect: tuple) -> None:
        if self.case is None:
            return
        try:
            box = self.case.box(box_id)
        except KeyError:
            return
        x0, y0, x1, y1 = rect
        if box.origin == "ai":  # a reader who moves an AI box stands behind it: it becomes theirs
            self.case.update_box(box_id, x0=x0, y0=y0, x1=x1, y1=y1, origin="user", accepted=True, author=self.user)
        else:
            self.case.update_box(box_id, x0=x0, y0=y0, x1=x1, y1=y1)
        self.grid.select_box(box_id)

    def _box_selected(self, box_id: str) -> None:
        self.grid.select_box(box_id)
        box = self._selected()
        if box is not None and box.origin == "ai" and not box.accepted:
            score = f" (score {box.score:.2f})" if box.score is not None else ""
            self.statusBar().showMessage(f"AI box{score}: Enter accepts it, dragging makes it yours, Delete removes it", 6000)

    def _selected(self) -> Box | None:
        if self.case is None or not self.grid.selected_box:
            return None
        try:
            return self.case.box(self.grid.selected_box)
        except KeyError:
            return None

    def delete_box(self) -> None:
        box = self._selected()
        if box is None:
            self.statusBar().showMessage("click a box to select it first", 3000)
            return
        self.case.remove_box(box.id)
        self.grid.select_box(None)

    def copy_box(self) -> None:
        box = self._selected()
        if box is None:
            self.statusBar().showMessage("click a box to select it first", 3000)
            return
        new = box_edits.copy_to_other_phases(self.case, box.id, self.user)
        self.statusBar().showMessage(
            f"copied the box to {', '.join(f'{b.phase} ({b.position:.1f} mm)' for b in new) or 'no other phase'}", 5000)

    def accept_box(self) -> None:
        box = self._selected()
        if box is None or box.origin != "ai":
            self.statusBar().showMessage("select an AI box (dashed) to accept it", 3000)
            return
        self.case.update_box(box.id, accepted=True)

    def accept_all(self) -> None:
        if self.case is not None:
            n = box_edits.accept_all_ai(self.case)
            self.statusBar().showMessage(f"accepted {n} AI boxes", 3000)

    def undo(self) -> None:
        if self.case is not None and not self.case.undo():
            self.statusBar().showMessage("nothing to undo", 2000)

    def redo(self) -> None:
        if self.case is not None and not self.case.redo():
            self.statusBar().showMessage("nothing to redo", 2000)

    def jump_to(self, phase: str, position: float) -> None:
        self.grid.set_active(phase)
        self.grid.set_position(position)

    # ---- view -----------------------------------------------------------------------------------
    def set_layout(self, mode: str) -> None:
        self.grid.set_layout(mode)
        self.layout_actions[mode].setChecked(True)
        if self.layout_combo.currentText() != mode:
            self.layout_combo.setCurrentText(mode)

    def set_preset(self, name: str) -> None:
        self.grid.set_preset(name)

    def _link_windows(self, on: bool) -> None:
        self.grid.link_windows = on
        self.statusBar().showMessage("windows linked across phases" if on else
                                     "windows per phase: presets and right-drag change the active phase only", 4000)

    def _sync_window_widgets(self) -> None:
        name = self.grid.preset if self.grid.preset in PRESETS else "custom"
        if self.preset_combo.currentText() != name:
            self.preset_combo.blockSignals(True)
            self.preset_combo.setCurrentText(name)
            self.preset_combo.blockSignals(False)

    def _next_phase(self) -> None:
        loaded = [p for p in PHASES if self.grid.views[p].volume is not None] or list(PHASES)
        i = loaded.index(self.grid.active) if self.grid.active in loaded else -1
        self.grid.set_active(loaded[(i + 1) % len(loaded)])

    def _cam_stage(self, stage: str) -> None:
        self.cam.set_stage(stage)
        self.grid.refresh()

    def _cam_opacity(self, opacity: float) -> None:
        self.cam.set_opacity(opacity)
        self.grid.refresh()

    def _cam_cmap(self, name: str) -> None:
        self.cam.set_cmap(name)
        self.grid.refresh()

    def toggle_cine(self) -> None:
        if self.cine_timer.isActive():
            self.stop_cine()
        elif self.case is not None:
            self.cine_timer.start()
            self.statusBar().showMessage("cine: press C to stop", 3000)

    def stop_cine(self) -> None:
        self.cine_timer.stop()

    def _cine_step(self) -> None:
        v = self.grid.views[self.grid.active]
        if v.volume is None or self.grid.position is None:
            self.stop_cine()
            return
        k = v.index_for(self.grid.position)
        self.grid.set_position(float(v.positions[(k + 1) % len(v.positions)]))

    def _refresh_ready(self) -> None:
        self.grid.refresh_ready()

    def _hover(self, info: dict | None) -> None:
        if info is None:
            self.readout.setText("")
            return
        x, y, z = info["lps"]
        value = f"{info['value']:.0f} {info['unit']}".strip() if info["value"] == info["value"] else "loading"
        self.readout.setText(
            f"{info['phase']}  slice {info['slice'] + 1}  col {info['col']} row {info['row']}   {value}   "
            f"LPS ({x:.1f}, {y:.1f}, {z:.1f}) mm")

    # ---- progress, errors, help ----------------------------------------------------------------
    def _progress_start(self, owner: object, message: str) -> None:
        self._progress_owner = owner
        self.progress.setValue(0)
        self.progress.setFormat(message[:60] + " %p%")
        self.progress.show()
        self.cancel_button.show()
        self._progress_message = message
        self.statusBar().showMessage(message)

    def _progress_set(self, fraction: float, message: str) -> None:
        self.progress.setValue(int(max(0.0, min(1.0, fraction)) * 1000))
        if message:
            self.progress.setFormat(message[:60] + " %p%")

    def _progress_done(self) -> None:
        self._progress_owner = None
        self.progress.hide()
        self.cancel_button.hide()
        if self.statusBar().currentMessage() == getattr(self, "_progress_message", None):
            self.statusBar().clearMessage()  # only our own "working…" line, not a later message

    def cancel_work(self) -> None:
        if self.load_task is not None and self.load_task.running:
            self.load_task.cancel()
        self.runner.cancel_all()
        for job in list(self.jobs):
            self.engine.cancel(job)
        if self._pending_jobs:
            self._pending_jobs.clear()
            if self._progress_owner == "engine-wait":
                self._progress_done()
        self.stop_cine()

    def busy(self) -> list[str]:
        work = list(self.runner.busy())
        names = {"analyze": "analysis", "auto_pick": "auto-pick"}
        work += [names.get(k, k) for k in self.jobs.values()]
        work += [f"{names.get(k, k)} (waiting for the engine)" for k in self._pending_jobs]
        return work

    def add_problem(self, text: str) -> None:
        self.problems.addItem(text)

    def problem_lines(self) -> list[str]:
        return [self.problems.item(i).text() for i in range(self.problems.count())]

    def show_error(self, message: str) -> None:
        """Tell the user (message box, problems panel, log); never blocks a worker."""
        log.error("%s", message)
        self.last_error = message
        self.add_problem(message)
        self.statusBar().showMessage(message, 10000)
        box = QMessageBox(QMessageBox.Icon.Warning, "liverview", message, QMessageBox.StandardButton.Ok, self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

    def show_keyboard_map(self) -> None:
        dialog = QDialog(self)
        dialog.setWindowTitle("Keyboard map")
        lay = QVBoxLayout(dialog)
        text = QTextBrowser()
        text.setHtml(keyboard.html())
        lay.addWidget(text)
        dialog.resize(640, 720)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()
        self.keyboard_dialog = dialog

    def show_about(self) -> None:
        from liverview import __version__

        QMessageBox.about(self, "About liverview",
                          f"liverview {__version__}\nFour-phase liver CT workstation.\n{RESEARCH_NOTICE}.")

    def _update_actions(self) -> None:
        have = self.case is not None
        a = self.actions
        a["undo"].setEnabled(have and self.case.can_undo)
        a["redo"].setEnabled(have and self.case.can_redo)
        for key in ("pick", "pick_all", "delete_box", "copy_box", "accept_box", "accept_all", "draw_box"):
            a[key].setEnabled(have)
        engine_ok = self.engine.state != "no-bundle"
        a["analyze"].setEnabled(have and engine_ok and "analyze" not in self.jobs.values())
        a["auto_pick"].setEnabled(have and engine_ok and "auto_pick" not in self.jobs.values())
        self.analyze_button.setEnabled(a["analyze"].isEnabled())
        self.picks.auto_button.setEnabled(a["auto_pick"].isEnabled())
        self.picks.pick_button.setEnabled(have)

    # ---- closing --------------------------------------------------------------------------------
    def closeEvent(self, event) -> None:
        work = self.busy()
        if work:
            answer = QMessageBox.question(
                self, "Work is running",
                f"Still running: {', '.join(work)}.\nStop it and quit? Your picks and boxes are saved.",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
            if answer != QMessageBox.StandardButton.Yes:
                event.ignore()
                return
        self.shutdown()
        event.accept()

    def shutdown(self) -> None:
        """Stop every worker, save the case, stop the engine process."""
        self.cancel_work()
        self.ready_timer.stop()
        self.runner.wait(5000)
        if self.saver is not None:
            self.saver.close()
            self.saver = None
        self.engine.stop()
