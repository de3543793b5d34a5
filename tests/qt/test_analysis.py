"""Analysis from the viewer: the engine process with a tiny bundle, auto-pick, findings panel, CAM overlay."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
import traceback

import pytest
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QMessageBox

from liverview import RESEARCH_NOTICE
from liverview.qt.findings_panel import FindingsPanel
from liverview.study.phases import PHASES

ENGINE_TIMEOUT_MS = 240_000  # the first request waits for torch to load in the engine process


def open_exam(window, qtbot, path):
    with qtbot.waitSignal(window.sigExamLoaded, timeout=60000):
        window.open_path(str(path))


def truth_picks(window, truth):
    for p in PHASES:
        window.case.set_picks(p, truth["phases"][p]["picks"])


def test_auto_pick_and_analysis_fill_the_findings_and_show_the_cam(engine_window, qtbot, phantom_exam):
    w = engine_window
    path, truth = phantom_exam
    open_exam(w, qtbot, path)
    w.start_engine()
    with qtbot.waitSignal(w.sigAutoPickDone, timeout=ENGINE_TIMEOUT_MS):
        qtbot.keyClick(w, Qt.Key.Key_K, Qt.KeyboardModifier.ControlModifier)
    assert w.engine.card["name"] == "random-untrained"
    assert w.findings.card["name"].text() == "random-untrained"  # the model card shows before any result
    for p in PHASES:
        assert len(w.case.picks[p]) == 3, p
        assert all(b.isEnabled() for b in w.picks.rows[p])
    assert w.lesion_extent is not None
    assert "auto-pick" in w.statusBar().currentMessage()

    with qtbot.waitSignal(w.sigAnalysisDone, timeout=ENGINE_TIMEOUT_MS):
        qtbot.keyClick(w, Qt.Key.Key_R, Qt.KeyboardModifier.ControlModifier)
    findings = w.case.findings
    exam = findings["exam"]
    panel = w.findings
    assert panel.result_box.isVisible() and not panel.empty.isVisible()
    assert panel.final.text().startswith(exam["final_class"])
    assert f"{exam['p_malignant']:.3f}" in panel.stage1.text()
    assert panel.stage2.text().startswith(exam["stage2_call"])
    values = {c: bar.value for c, bar in panel.class_bars.items()}
    assert values == pytest.approx(exam["probabilities"], abs=1e-6)
    assert sum(values.values()) == pytest.approx(1.0, abs=1e-4)
    assert panel.table.rowCount() == len(findings["composites"]) == 3
    used = {panel.table.item(r, 2).text().split()[0] for r in range(3)}
    assert used <= {"user", "detected", "none"}
    assert panel.attr_bars[("stage1", "A")].isVisible()
    assert panel.card["version"].text() == findings["bundle"]["version"]
    assert panel.card["hash"].toolTip() == findings["bundle"]["manifest_sha256"]
    assert "Untrained random weights" in panel.notice.text()  # the bundle's own notice (not a phantom bundle)

    # the CAM on a picked slice of every phase, with on/off, stage and opacity controls
    grid = w.grid
    grid.set_position(w.case.picks["V"][1])
    shown = {p: grid.views[p].cam.isVisible() for p in PHASES}
    assert shown == {p: True for p in PHASES}
    cam_v = grid.views["V"].cam
    assert cam_v.qimage is not None and not cam_v.qimage.isNull()
    assert cam_v.boundingRect().width() > 0
    key_stage1 = grid.views["V"]._cam_key
    qtbot.keyClick(w, Qt.Key.Key_H)
    assert not cam_v.isVisible()
    qtbot.keyClick(w, Qt.Key.Key_H)
    assert cam_v.isVisible()
    qtbot.keyClick(w, Qt.Key.Key_H, Qt.KeyboardModifier.ShiftModifier)
    assert w.cam_panel.current_stage() == "stage2"
    assert grid.views["V"]._cam_key != key_stage1 and grid.views["V"]._cam_key[1] == "stage2"
    # the random bundle's Grad-CAM may be all zero, so the pixels' opacity is checked in
    # test_cam_overlay.py::test_opacity_is_baked_into_the_pixels; here the key reaches the session and the source
    opacity = w.cam.opacity
    qtbot.keyClick(w, Qt.Key.Key_BracketLeft)
    assert w.cam.opacity == pytest.approx(opacity - 0.10, abs=0.011)
    assert w.session.view.cam_opacity == pytest.approx(opacity - 0.10, abs=0.011)
    assert w.cam_panel.opacity.value() == round((opacity - 0.10) * 100)
    qtbot.keyClick(w, Qt.Key.Key_Down)  # a slice that was not picked has no CAM
    if not w.case.is_picked("V", grid.views["V"].position):
        assert not cam_v.isVisible()

    # AI boxes: dashed until accepted
    grid.set_position(w.case.picks["V"][1])
    ai = [b for b in grid.shown_boxes("V") if b.origin == "ai"]
    assert ai  # the random detector's threshold is low: it proposes boxes
    roi = grid.box_layers["V"].roi_for(ai[0].id)
    assert roi.pen.style() == Qt.PenStyle.DashLine
    assert roi.caption.textItem.toPlainText().startswith("AI ")
    w._box_selected(ai[0].id)
    qtbot.keyClick(w, Qt.Key.Key_Return)
    assert w.case.box(ai[0].id).accepted
    assert grid.box_layers["V"].roi_for(ai[0].id).pen.style() == Qt.PenStyle.SolidLine
    w.saver.flush()
    saved = json.loads(w.case_path.read_text(encoding="utf-8"))
    assert saved["findings"]["exam"]["final_class"] == exam["final_class"]


def test_a_phantom_trained_bundle_carries_the_research_notice(qtbot):
    panel = FindingsPanel()
    qtbot.addWidget(panel)
    panel.set_bundle_card({"name": "liverview-default", "version": "1.0", "manifest_sha256": "ab" * 32,
                           "training_data": "phantom cohort of 148 synthetic exams", "intended_use": "research"})
    assert panel.notice.text() == RESEARCH_NOTICE
    assert not panel.notice.isHidden()
    panel.set_bundle_card({"name": "site-model", "training_data": "hospital cohort", "research_notice": "Research use only."})
    assert panel.notice.text() == "Research use only."


class StallWatch:
    """A 10 ms heartbeat on the GUI thread, and a watchdog thread that notes where every
    thread stands when a beat is late (so a failure says what held the GUI)."""

    def __init__(self) -> None:
        self.gaps: list[tuple[float, str]] = []
        self.phase = "start"
        self.last = time.perf_counter()
        self.samples: list[str] = []
        self.main = threading.get_ident()
        self.timer = QTimer()
        self.timer.setInterval(10)
        self.timer.timeout.connect(self.beat)
        self.running = False

    def beat(self) -> None:
        now = time.perf_counter()
        self.gaps.append((now - self.last, self.phase))
        self.last = now

    def watch(self) -> None:
        noted = 0.0
        while self.running:
            time.sleep(0.01)
            now = time.perf_counter()
            if now - self.last > 0.06 and now - noted > 0.05:
                noted = now
                phase = self.phase
                frames = sys._current_frames()
                lines = []
                for tid, frame in frames.items():
                    if tid == threading.get_ident():
                        continue
                    stack = traceback.extract_stack(frame)[-4:]
                    who = "GUI" if tid == self.main else "thread"
                    lines.append(f"{who}: " + " < ".join(f"{f.name}({f.filename.split('/')[-1]}:{f.lineno})" for f in reversed(stack)))
                self.samples.append(f"[{phase}, {(now - self.last) * 1000:.0f} ms] " + " | ".join(lines))

    def __enter__(self):
        self.running = True
        self.timer.start()
        threading.Thread(target=self.watch, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.running = False
        self.timer.stop()


def test_gui_thread_never_stalls_while_an_exam_loads_and_analysis_runs(engine_window, qtbot, phantom_exam_128):
    w = engine_window
    path, truth = phantom_exam_128
    # the window imports the DICOM reader in the background after it shows (startup, not loading)
    qtbot.waitUntil(lambda: w.preload_task is not None and not w.preload_task.running, timeout=60000)
    with StallWatch() as watch:
        watch.phase = "loading"
        w.start_engine()  # torch loads in the engine process while the exam decodes here
        open_exam(w, qtbot, path)
        qtbot.wait(30)
        watch.phase = "picks"
        truth_picks(w, truth)
        qtbot.wait(30)
        watch.phase = "analysis"
        with qtbot.waitSignal(w.sigAnalysisDone, timeout=ENGINE_TIMEOUT_MS):
            w.run_analysis()
        watch.phase = "auto-pick"
        with qtbot.waitSignal(w.sigAutoPickDone, timeout=ENGINE_TIMEOUT_MS):
            w.auto_pick()
        watch.phase = "scrolling"
        for _ in range(20):
            qtbot.keyClick(w, Qt.Key.Key_Down)
            qtbot.wait(15)
    assert len(watch.gaps) > 100
    worst = max(watch.gaps)
    assert worst[0] < 0.100, (f"GUI thread stalled {worst[0] * 1000:.0f} ms during {worst[1]}; "
                              f"5 worst: {sorted(watch.gaps, reverse=True)[:5]}; where: {watch.samples}")


def test_closing_while_analysis_runs_asks_first(engine_window, qtbot, phantom_exam, monkeypatch):
    w = engine_window
    path, truth = phantom_exam
    open_exam(w, qtbot, path)
    truth_picks(w, truth)
    w.run_analysis()  # waits for the engine process to start: work is running
    assert w.busy()
    asked = []
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: (asked.append(a[2]), QMessageBox.StandardButton.No)[1])
    w.close()
    assert w.isVisible() and asked and "analysis" in asked[0]
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    w.close()
    assert not w.isVisible()
    assert w.engine.process is None and w.engine.state == "stopped"


def test_closing_during_housekeeping_alone_does_not_ask(window, qtbot, monkeypatch):
    import threading

    from liverview.qt.workers import Task

    release = threading.Event()
    task = window.runner.start(Task(lambda progress, cancelled: release.wait(10), "sending the exam to the engine",
                                    user_work=False))
    assert task.running and window.busy() == []
    asked = []
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: (asked.append(a[2]), QMessageBox.StandardButton.No)[1])
    window.close()
    release.set()
    assert not asked and not window.isVisible()


def test_an_engine_crash_reaches_the_user_and_the_log(engine_window, qtbot, phantom_exam, caplog):
    w = engine_window
    path, truth = phantom_exam
    open_exam(w, qtbot, path)
    truth_picks(w, truth)
    with qtbot.waitSignal(w.sigEngineState, timeout=ENGINE_TIMEOUT_MS, check_params_cb=lambda s: s == "ready"):
        w.start_engine()
    qtbot.waitUntil(lambda: w.engine.study_ready_token == w.session.load_token, timeout=60000)
    caplog.set_level(logging.ERROR)
    with qtbot.waitSignal(w.sigJobFailed, timeout=60000):
        w.run_analysis()
        w.engine.process.kill()
    assert w.last_error.startswith("Analysis failed:")
    assert "engine process ended" in w.last_error
    assert w.last_error in w.problem_lines()
    assert any("engine process ended unexpectedly" in r.getMessage() for r in caplog.records)
    assert not w.busy()


def test_without_a_bundle_the_user_is_told_what_to_do(qtbot, tmp_path, phantom_exam, tiny_bundle):
    from liverview.qt.main_window import MainWindow

    w = MainWindow(bundle_dir=str(tmp_path / "no-such-bundle"), engine_threads=1)
    qtbot.addWidget(w)
    w.show()
    try:
        with qtbot.waitSignal(w.sigEngineState, timeout=ENGINE_TIMEOUT_MS, check_params_cb=lambda s: s == "no-bundle"):
            w.start_engine()
        assert "no model bundle" in w.engine_label.text()
        assert "Choose a bundle folder" in w.engine_label.text()
        assert any("no-such-bundle" in line for line in w.problem_lines())
        open_exam(w, qtbot, phantom_exam[0])
        assert not w.actions["analyze"].isEnabled()
        w.run_analysis()
        assert w.last_error.startswith("No model bundle is loaded")
        # choosing a bundle folder (Analysis > Choose model bundle folder) makes the engine usable
        with qtbot.waitSignal(w.sigEngineState, timeout=ENGINE_TIMEOUT_MS, check_params_cb=lambda s: s == "ready"):
            w.set_bundle(str(tiny_bundle))
        assert w.actions["analyze"].isEnabled()
        assert w.findings.card["name"].text() == "random-untrained"
        from liverview.qt.settings import settings

        assert settings().value("engine/bundle") == str(tiny_bundle)  # remembered for the next start
    finally:
        w.shutdown()


def test_escape_cancels_a_running_analysis(engine_window, qtbot, phantom_exam):
    w = engine_window
    path, truth = phantom_exam
    open_exam(w, qtbot, path)
    truth_picks(w, truth)
    with qtbot.waitSignal(w.sigEngineStudyReady, timeout=ENGINE_TIMEOUT_MS):
        w.start_engine()
    qtbot.waitUntil(lambda: w.engine.ready, timeout=ENGINE_TIMEOUT_MS)
    with qtbot.waitSignal(w.sigJobCancelled, timeout=60000):
        qtbot.keyClick(w, Qt.Key.Key_R, Qt.KeyboardModifier.ControlModifier)
        assert "analyze" in w.session.jobs and w.cancel_button.isVisible()
        qtbot.keyClick(w, Qt.Key.Key_Escape)
    assert w.case.findings is None  # nothing half-done was stored
    assert not w.busy() and w.progress.isHidden()
    assert w.statusBar().currentMessage() == "cancelled"
    with qtbot.waitSignal(w.sigAnalysisDone, timeout=ENGINE_TIMEOUT_MS):  # the engine still works afterwards
        w.run_analysis()
    assert w.case.findings is not None


def test_an_edit_after_the_analysis_marks_the_result_out_of_date(engine_window, qtbot, phantom_exam):
    w = engine_window
    path, truth = phantom_exam
    open_exam(w, qtbot, path)
    truth_picks(w, truth)
    with qtbot.waitSignal(w.sigAnalysisDone, timeout=ENGINE_TIMEOUT_MS):
        w.run_analysis()
    panel = w.findings
    assert not panel.stale_banner.isVisible() and panel.result_box.isEnabled()
    w.grid.set_position(w.case.picks["V"][1])
    assert w.grid.views["V"].cam.isVisible()
    with qtbot.waitSignal(w.sigStale, timeout=5000, check_params_cb=lambda stale: stale):
        w.session.toggle_pick("V", w.case.picks["V"][0])  # the findings no longer describe the case
    assert panel.stale_banner.isVisible() and "run the analysis again" in panel.stale_banner.text().lower()
    assert panel.final.text().startswith("out of date") and not panel.result_box.isEnabled()
    assert not w.grid.views["V"].cam.isVisible()  # no heatmap for inputs it was not computed on
    assert "out of date" in w.cam_panel.status.text()
    with qtbot.waitSignal(w.sigStale, timeout=5000, check_params_cb=lambda stale: not stale):
        qtbot.keyClick(w, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # undo: back to what was analysed
    assert not panel.stale_banner.isVisible() and w.grid.views["V"].cam.isVisible()


def test_a_partial_exam_is_refused_in_the_cli_s_words_and_the_reader_may_go_on(shown, qtbot):
    from conftest import synthetic_study

    study = synthetic_study(shift_mm=1.0)
    del study.volumes["D"], study.sources["D"]
    shown._show_study(study)
    qtbot.waitUntil(lambda: shown.grid.views["P"].index >= 0)
    shown.session.set_all_picks({p: list(study.volumes[p].positions[8:11]) for p in study.phases})
    with qtbot.waitSignal(shown.sigJobFailed, timeout=5000) as failed:
        shown.run_analysis()
    message = failed.args[0]
    assert message.startswith("Analysis refused: missing phase(s) D (delayed)")
    assert message in shown.problem_lines() and shown.case.findings is None
    dialog = shown.partial_dialog
    assert dialog.isVisible() and "Analyse with the phases there are?" in dialog.text()
    dialog.reject()  # the reader declines: nothing runs
    assert not shown.session.jobs and not shown.session.pending


def test_a_guessed_phase_is_marked_on_its_view_and_confirmed_before_analysis(shown, qtbot):
    from conftest import synthetic_study

    study = synthetic_study(shift_mm=1.0)
    study.sources["A"].confidence = 0.3  # as if assigned from the series order alone
    shown._show_study(study)
    qtbot.waitUntil(lambda: shown.grid.views["P"].index >= 0)
    assert "phase guessed" in shown.grid.views["A"].title.text()
    assert "phase guessed" not in shown.grid.views["V"].title.text()
    shown.session.set_all_picks({p: list(study.volumes[p].positions[8:11]) for p in study.phases})
    with qtbot.waitSignal(shown.sigJobFailed, timeout=5000) as failed:
        shown.run_analysis()
    assert failed.args[0].startswith("Analysis refused: phase A (arterial) is a guess")
    assert shown.findings.empty.text().startswith("Not analysed. Analysis refused")
    dialog = shown.partial_dialog
    assert dialog.isVisible() and "Analyse with the guessed phases" in dialog.text()
    dialog.reject()
    assert not shown.session.jobs and not shown.session.pending
