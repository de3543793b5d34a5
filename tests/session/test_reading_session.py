"""The reading session without Qt: open, pick, box, save, analyse, stale findings, refusals, closing."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from liverview.session import JobState
from liverview.study.phases import PHASES

ENGINE_TIMEOUT = 240.0


@pytest.fixture(scope="module")
def loaded_engine(tiny_bundle):
    """The tiny bundle loaded once for the module."""
    from liverview.engine.analyze import Engine

    return Engine(str(tiny_bundle))


@pytest.fixture
def local_engine(loaded_engine):
    """The engine in this process (the command line's way); each session stops its own."""
    from liverview.engine.local import LocalEngine

    engine = LocalEngine(engine=loaded_engine)
    yield engine
    engine.stop()


def truth_picks(session, truth):
    session.set_all_picks({p: truth["phases"][p]["picks"] for p in PHASES})


def run_job(session, start, timeout=ENGINE_TIMEOUT):
    """Start a job and run the loop until it ends; returns ('done'|'failed'|'cancelled', detail)."""
    out = []
    handlers = (
        (session.job_done, lambda kind, payload: out.append(("done", payload))),
        (session.job_failed, lambda kind, message, exc: out.append(("failed", (message, exc)))),
        (session.job_cancelled, lambda kind: out.append(("cancelled", kind))),
    )
    for sig, fn in handlers:
        sig.connect(fn)
    try:
        start()
        assert session.run_until(lambda: bool(out), timeout), "the job did not end in time"
    finally:
        for sig, fn in handlers:
            sig.disconnect(fn)
    return out[0]


def test_the_session_imports_no_qt_and_no_torch():
    code = ("import sys, liverview.session, liverview.engine.client; "
            "bad = [m for m in ('PySide6', 'pyqtgraph', 'torch') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_open_shows_the_study_early_then_loads_it(make_session, open_exam, phantom_exam):
    path, truth = phantom_exam
    s = make_session()
    events = []
    s.study_shown.connect(lambda study: events.append(("shown", int(sum(v.ready.sum() for v in study.volumes.values())))))
    s.exam_loaded.connect(lambda exam: events.append(("loaded", None)))
    open_exam(s, path)
    assert [e[0] for e in events] == ["shown", "loaded"]
    assert s.study.phases == list(PHASES)
    assert s.study.patient_id == truth["patient_id"]
    assert not s.loading and s.case is not None and s.analysis_state is JobState.IDLE


def test_a_folder_without_images_fails_with_one_line(make_session, open_exam, tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    s = make_session()
    message = open_exam(s, tmp_path)
    assert isinstance(message, str) and str(tmp_path) in message and "\n" not in message
    assert s.last_error.startswith("Could not open the exam:") and s.case is None and not s.loading


def test_edits_are_saved_and_restored(make_session, open_exam, phantom_exam, tmp_path):
    path, truth = phantom_exam
    s = make_session(case_dir=tmp_path / "cases")
    open_exam(s, path)
    z = truth["phases"]["V"]["picks"][1]
    assert s.toggle_pick("V", z)
    box = s.draw_box("V", z, (10, 12, 30, 33))
    assert s.flush()
    saved = json.loads(s.case_path.read_text(encoding="utf-8"))
    assert saved["picks"]["V"] == pytest.approx([z])
    assert [b["id"] for b in saved["boxes"]] == [box.id]
    s.close()
    assert s.case is None and s.study is None
    open_exam(s, path)
    assert s.case_restored and s.case.picks["V"] == pytest.approx([z])
    assert [b.rect for b in s.case.boxes] == [box.rect]
    assert not s.undo()  # the undo history belongs to one opening of the exam


def test_a_bad_case_file_is_set_aside_and_the_exam_opens(make_session, open_exam, phantom_exam, tmp_path):
    path, truth = phantom_exam
    s = make_session(case_dir=tmp_path / "cases")
    open_exam(s, path)
    s.toggle_pick("V", truth["phases"]["V"]["picks"][0])
    s.flush()
    case_path = s.case_path
    s.close()
    data = json.loads(case_path.read_text(encoding="utf-8"))
    data["picks"] = "not a list"
    case_path.write_text(json.dumps(data), encoding="utf-8")
    open_exam(s, path)
    assert not s.case_restored and not any(s.case.picks.values())
    kept = [p for p in case_path.parent.iterdir() if "unreadable" in p.name]
    assert len(kept) == 1
    assert any(kept[0].name in line and "picks" in line for line in s.problems), s.problems


def test_auto_pick_then_analysis_then_an_edit_makes_the_findings_stale(make_session, open_exam, phantom_exam,
                                                                     local_engine):
    path, truth = phantom_exam
    s = make_session(local_engine)
    s.start_engine()
    open_exam(s, path)
    kind, payload = run_job(s, s.request_auto_pick)
    assert kind == "done" and all(len(s.case.picks[p]) == 3 for p in PHASES)
    stale_events = []
    s.stale_changed.connect(stale_events.append)
    kind, payload = run_job(s, s.request_analysis)
    assert kind == "done", payload
    assert s.case.findings is not None and s.analysis_state is JobState.DONE and not s.findings_stale
    assert s.case.findings["computed_from"]["phases"] == {p: s.study.sources[p].series_uid for p in PHASES}

    first = s.case.picks["V"][0]
    s.toggle_pick("V", first)  # unpick one slice: the findings no longer describe the case
    s.run_until(lambda: s.findings_stale, 5)
    assert s.findings_stale and s.analysis_state is JobState.STALE and stale_events == [True]
    assert s.flush()
    assert json.loads(s.case_path.read_text(encoding="utf-8"))["findings_stale"] is True
    s.undo()  # back to what was analysed
    s.run_until(lambda: not s.findings_stale, 5)
    assert not s.findings_stale and s.analysis_state is JobState.DONE and stale_events == [True, False]


def test_a_phase_reassignment_makes_saved_findings_stale(make_session, open_exam, phantom_exam, local_engine):
    path, truth = phantom_exam
    s = make_session(local_engine)
    s.start_engine()
    open_exam(s, path)
    truth_picks(s, truth)
    assert run_job(s, s.request_analysis)[0] == "done"
    s.flush()
    sources = {p: s.study.sources[p].series_uid for p in PHASES}
    swapped = dict(sources, V=sources["D"], D=sources["V"])
    loaded = []
    s.exam_loaded.connect(loaded.append)
    assert s.reassign_phases(swapped)
    assert s.run_until(lambda: bool(loaded), 60)
    assert s.study.sources["V"].series_uid == sources["D"]
    assert s.case.findings is not None  # kept, but marked
    assert s.findings_stale and s.analysis_state is JobState.STALE
    assert any("out of date" in line for line in s.problems)


def test_a_single_phase_exam_is_refused_as_the_command_line_refuses_it(make_session, open_exam, single_phase_exam,
                                                                      local_engine, tiny_bundle, capsys):
    from liverview.cli import main
    from liverview.engine.errors import MissingPhasesError

    s = make_session(local_engine)
    s.start_engine()
    open_exam(s, single_phase_exam)
    assert s.study.phases == ["V"]
    s.set_all_picks({"V": list(s.study.volumes["V"].positions[10:13])})
    kind, (message, exc) = run_job(s, s.request_analysis)
    assert kind == "failed" and isinstance(exc, MissingPhasesError)
    assert s.case.findings is None and s.analysis_state is JobState.FAILED

    rc = main(["analyze", str(single_phase_exam), "--bundle", str(tiny_bundle)])
    err = capsys.readouterr().err
    assert rc == MissingPhasesError.exit_code
    assert str(exc) in err  # the same rule, in the same words
    kind, payload = run_job(s, lambda: s.request_analysis(allow_missing=True))
    assert kind == "done" and payload["findings"]["phases_missing"] == ["P", "A", "D"]


def _volumes_alive() -> int:
    import gc

    from liverview.study.volume import Volume

    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) is Volume)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096


def _segments(names) -> set[str]:
    from pathlib import Path

    return {n for n in names if (Path("/dev/shm") / n.lstrip("/")).exists()}


@pytest.mark.slow
def test_closing_five_exams_frees_their_volumes_and_shared_memory(make_session, open_exam, phantom_exam, tiny_bundle):
    """Open and close five exams with the engine process holding each one; nothing stays behind."""
    from liverview.engine.client import EngineClient

    path, _ = phantom_exam
    engine = EngineClient(str(tiny_bundle), threads=1)
    s = make_session(engine)
    s.start_engine()
    ready = []
    s.engine_study_ready.connect(lambda: ready.append(s.load_token))

    def one_round():
        open_exam(s, path)
        assert s.run_until(lambda: s.load_token in ready, ENGINE_TIMEOUT), "the engine did not take the exam"
        names = engine._shared.names if engine._shared is not None else []
        assert names and _segments(names) == set(names)  # the engine reads the exam from shared memory
        s.process_events(0.1)
        # and so does the viewer: one copy of the exam, not two
        assert all(not v.pixels.flags.owndata and not v.pixels.flags.writeable for v in s.study.volumes.values())
        s.close()
        return names

    one_round()  # the first round imports the DICOM reader and starts the engine: the baseline comes after it
    base_rss = _rss_bytes()
    assert _volumes_alive() == 0
    seen = []
    for _ in range(5):
        seen += one_round()
        assert _volumes_alive() == 0
    assert _segments(seen) == set()
    assert _rss_bytes() <= base_rss * 1.15, (base_rss, _rss_bytes())


@pytest.mark.slow
def test_a_killed_engine_fails_the_job_and_the_next_analysis_works(make_session, open_exam, phantom_exam, tiny_bundle):
    import os
    import signal

    from liverview.engine.client import EngineClient
    from liverview.engine.errors import EngineDied

    path, truth = phantom_exam
    engine = EngineClient(str(tiny_bundle), threads=1)
    s = make_session(engine)
    s.start_engine()
    open_exam(s, path)
    truth_picks(s, truth)
    assert s.run_until(s.engine_can_run, ENGINE_TIMEOUT)

    def start_and_kill():
        ok = s.request_analysis()
        os.kill(engine.pid, signal.SIGKILL)
        return ok

    kind, (message, exc) = run_job(s, start_and_kill, timeout=60)
    assert kind == "failed" and isinstance(exc, EngineDied), message
    assert s.analysis_state is JobState.FAILED and not s.busy()
    assert message.startswith("Analysis failed:") and "engine process ended" in message
    kind, payload = run_job(s, s.request_analysis)  # restarts the engine, sends the exam again
    assert kind == "done" and s.case.findings is not None and s.analysis_state is JobState.DONE


def test_opening_another_exam_while_an_analysis_runs_drops_its_result(make_session, open_exam, phantom_exam,
                                                                       single_phase_exam, local_engine):
    path, truth = phantom_exam
    s = make_session(local_engine)
    s.start_engine()
    open_exam(s, path)
    truth_picks(s, truth)
    results = []
    s.job_done.connect(lambda kind, payload: results.append(kind))
    assert s.request_analysis()
    assert "analyze" in s.jobs
    open_exam(s, single_phase_exam)  # the running job belongs to the exam that was closed
    assert s.run_until(lambda: not local_engine.busy(), ENGINE_TIMEOUT)
    s.process_events(0.2)
    assert results == [] and s.case.findings is None and not s.jobs
    assert s.study.phases == ["V"] and s.analysis_state is JobState.IDLE


def test_saved_findings_the_contract_cannot_read_are_left_out_and_named(make_session, open_exam, phantom_exam,
                                                                       tmp_path):
    path, truth = phantom_exam
    s = make_session(case_dir=tmp_path / "cases")
    open_exam(s, path)
    z = truth["phases"]["V"]["picks"][0]
    s.toggle_pick("V", z)
    s.flush()
    case_path = s.case_path
    s.close()
    data = json.loads(case_path.read_text(encoding="utf-8"))
    data["findings"] = {"exam": "not an exam block"}
    case_path.write_text(json.dumps(data), encoding="utf-8")
    open_exam(s, path)
    assert s.case_restored and s.case.picks["V"] == pytest.approx([z])  # the reader's work stays
    assert s.case.findings is None and s.analysis_state is JobState.IDLE
    assert any("saved findings" in line and "run the analysis again" in line for line in s.problems)


@pytest.mark.slow
def test_what_the_reader_accepts_reaches_the_engine_process(make_session, open_exam, phantom_exam, tiny_bundle):
    """Guessed phases: refused, then analysed once accepted, by the engine in its own process."""
    from liverview.engine.client import EngineClient
    from liverview.engine.errors import GuessedPhasesError

    path, truth = phantom_exam
    engine = EngineClient(str(tiny_bundle), threads=1)
    s = make_session(engine)
    open_exam(s, path)
    for p in PHASES:  # as if the phases came from the series order alone
        s.study.sources[p].confidence = 0.3
    truth_picks(s, truth)
    s.start_engine()  # the engine gets the exam with these sources
    assert s.run_until(s.engine_can_run, ENGINE_TIMEOUT)
    kind, (message, exc) = run_job(s, s.request_analysis)
    assert kind == "failed" and isinstance(exc, GuessedPhasesError) and message.startswith("Analysis refused")
    kind, payload = run_job(s, lambda: s.retry_analysis(accept_guessed_phases=True))
    assert kind == "done", payload
    assert any("is a guess" in note for note in payload["findings"]["notes"])  # the result says so


def test_picks_without_a_liver_are_refused_by_the_engine_and_cannot_be_overridden(make_session, open_exam,
                                                                                phantom_exam, local_engine):
    from liverview.engine.errors import NotLiverError

    path, truth = phantom_exam
    s = make_session(local_engine)
    s.start_engine()
    open_exam(s, path)
    s.set_all_picks({p: [float(v) for v in s.study.volumes[p].positions[-3:]] for p in PHASES})  # heart level
    assert s.analysis_refusal() is None  # the quick check on the session's thread reads no pixels
    kind, (message, exc) = run_job(s, s.request_analysis)
    assert kind == "failed" and isinstance(exc, NotLiverError), message
    assert message.startswith("Analysis refused") and s.case.findings is None
    assert s.analysis_state is JobState.FAILED
