"""The main window's widgets: the grid in the middle, docks for picks, analysis and problems, menus, toolbar."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import (
    QCheckBox, QComboBox, QDockWidget, QLabel, QListWidget, QProgressBar, QPushButton, QScrollArea, QVBoxLayout,
    QWidget,
)

from liverview.qt import keyboard
from liverview.qt.cam_panel import CamPanel
from liverview.qt.findings_panel import FindingsPanel
from liverview.qt.phase_grid import LAYOUTS, PRESETS
from liverview.qt.pick_strip import PickStrip


class WindowLayout:
    """Builds the main window's docks, status bar, actions (from the keyboard table), menus and toolbar."""

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

