"""The engine as a service: typed replies through a real engine process, its death and restart, shared memory released."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import pytest

from liverview.engine.client import EngineClient
from liverview.engine.errors import (
    AnalysisError,
    AutoPickError,
    BundleError,
    EngineDied,
    EngineError,
    MissingPhasesError,
    error_from_reply,
)
from liverview.study.case import Case

WAIT = 240.0  # generous: the engine process imports torch on a shared, busy machine


class Recorder:
    """Every signal of a client, in order, with a wait for the first one that matches."""

    NAMES = ("state_changed", "bundle_changed", "study_ready", "job_progress", "job_done", "job_failed", "job_cancelled")

    def __init__(self, client) -> None:
        self.seen: list[tuple] = []
        self.cond = threading.Condition()
        for name in self.NAMES:
            getattr(client, name).connect(lambda *args, _name=name: self._add(_name, args))

    def _add(self, name: str, args: tuple) -> None:
        with self.cond:
            self.seen.append((name, *args))
            self.cond.notify_all()

    def wait(self, name: str, first=None, timeout: float = WAIT) -> tuple:
        """The args of the first `name` signal (whose first argument is `first`, when given)."""

        def found():
            for item in self.seen:
                if item[0] == name and (first is None or item[1] == first):
                    return item[1:]
            return None

        with self.cond:
            assert self.cond.wait_for(lambda: found() is not None, timeout), f"no {name}({first}) in {timeout} s: {self.seen}"
            return found()

    def job_end(self, job: int, timeout: float = WAIT) -> tuple:
        """(signal name, payload or error) of the job's end."""

        def found():
            for item in self.seen:
                if item[0] in ("job_done", "job_failed", "job_cancelled") and item[1] == job:
                    return item
            return None

        with self.cond:
            assert self.cond.wait_for(lambda: found() is not None, timeout), f"job {job} did not end: {self.seen}"
            item = found()
        return item[0], (item[2] if len(item) > 2 else None)


def _segments(names):
    return [n for n in names if os.path.exists(os.path.join("/dev/shm", n.lstrip("/")))]


def _picked_case(study, payload) -> Case:
    case = Case(study)
    for phase, positions in payload["picks"].items():
        case.set_picks(phase, positions)
    return case


def test_error_from_reply_maps_registered_names_only():
    err = error_from_reply("MissingPhasesError", "missing phase(s) D")
    assert type(err) is MissingPhasesError and isinstance(err, AnalysisError) and isinstance(err, ValueError)
    assert str(err) == "missing phase(s) D" and err.exit_code == 3
    assert type(error_from_reply("BundleError", "x")) is BundleError
    assert type(error_from_reply("AutoPickError", "x")).exit_code == 7
    for name in ("KeyError", "SystemExit", "Exception", "error_from_reply", ""):
        assert type(error_from_reply(name, "boom")) is EngineError


def test_the_client_imports_neither_torch_nor_qt():
    code = (
        "import sys, liverview.engine.client, liverview.engine.protocol, liverview.engine.errors; "
        "bad = [m for m in sys.modules if m == 'torch' or m.startswith('PySide6')]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.fixture(scope="module")
def service(tiny_bundle):
    client = EngineClient(bundle_dir=str(tiny_bundle), threads=1)
    rec = Recorder(client)
    client.start()
    yield client, rec
    client.stop()


def test_round_trip_bundle_study_auto_pick_and_analysis(service, synthetic_study):
    client, rec = service
    card = rec.wait("bundle_changed")[0]
    assert client.ready and card["manifest_sha256"] == client.card["manifest_sha256"] and "load_seconds" in card
    study = synthetic_study()
    shared = client.share_study(study)
    client.send_study(1, shared)
    rec.wait("study_ready", 1)
    assert client.study_ready_token == 1

    job = client.auto_pick()
    kind, payload = rec.job_end(job)
    if kind == "job_failed":  # a random detector may see nothing: that is a typed refusal, not a crash
        assert isinstance(payload, AutoPickError), payload
        payload = {"picks": {p: [vol.position_of(k) for k in (5, 6, 7)] for p, vol in study.volumes.items()}}
    else:
        assert kind == "job_done" and set(payload) == {"picks", "extent", "reference"}
        assert any(item[0] == "job_progress" and item[1] == job for item in rec.seen)

    job = client.analyze(_picked_case(study, payload).to_dict())
    kind, payload = rec.job_end(job)
    assert kind == "job_done", payload
    assert set(payload) == {"findings", "ai_boxes"}
    assert payload["findings"]["phases_used"] == ["P", "A", "V", "D"]
    assert not client.busy()


def test_missing_phase_is_a_typed_refusal_unless_allowed(service, synthetic_study):
    client, rec = service
    study = synthetic_study(phases=("P", "A", "V"))
    client.send_study(2, client.share_study(study))
    rec.wait("study_ready", 2)
    case = Case(study)
    for p, vol in study.volumes.items():
        case.set_picks(p, [vol.position_of(k) for k in (5, 6, 7)])

    kind, error = rec.job_end(client.analyze(case.to_dict()))
    assert kind == "job_failed" and isinstance(error, MissingPhasesError)
    assert "missing phase(s) D (delayed)" in str(error) and "zero channels" in str(error)
    with pytest.raises(AnalysisError):
        raise error

    kind, payload = rec.job_end(client.analyze(case.to_dict(), allow_missing=True))
    assert kind == "job_done", payload
    assert payload["findings"]["phases_missing"] == ["D"]


def test_a_killed_engine_fails_its_job_at_once_and_restarts_on_the_next_request(service, synthetic_study):
    client, rec = service
    study = synthetic_study()
    client.send_study(3, client.share_study(study))
    rec.wait("study_ready", 3)
    case = Case(study)
    for p, vol in study.volumes.items():
        case.set_picks(p, [vol.position_of(k) for k in (5, 6, 7)])
    old_pid = client.pid

    os.kill(client.process.pid, signal.SIGSTOP)  # so the job cannot finish before the kill lands
    job = client.analyze(case.to_dict())
    os.kill(client.process.pid, signal.SIGKILL)
    kind, error = rec.job_end(job, timeout=30.0)
    assert kind == "job_failed" and isinstance(error, EngineDied), error
    assert "SIGKILL" in str(error) and "restarts on the next request" in str(error)
    rec.wait("state_changed", "dead", timeout=30.0)
    assert client.state == "dead" and not client.busy()

    job = client.analyze(case.to_dict())  # restarts, re-sends bundle and exam, then runs
    kind, payload = rec.job_end(job)
    assert kind == "job_done", payload
    assert client.pid != old_pid and client.ready and client.study_ready_token == 3


def test_a_job_on_a_dead_pipe_fails_at_once(service, monkeypatch):
    client, rec = service
    rec.wait("bundle_changed")
    # the moment between the pipe breaking and the process being reaped: the send itself fails
    monkeypatch.setattr(client, "_alive", lambda: True)
    client._requests.close()
    kind, error = rec.job_end(client.auto_pick(), timeout=30.0)
    assert kind == "job_failed" and isinstance(error, EngineDied)


def test_stop_releases_every_shared_segment(tiny_bundle, synthetic_study):
    client = EngineClient(bundle_dir=str(tiny_bundle), threads=1)
    shared = [client.share_study(synthetic_study()) for _ in range(2)]
    names = [n for s in shared for n in s.names]
    assert len(_segments(names)) == 8
    client.send_study(1, shared[0])
    client.send_study(2, shared[1])  # replaces the first: its segments go at once
    assert sorted(_segments(names)) == sorted(shared[1].names)
    client.stop()
    client.stop()  # idempotent
    assert _segments(names) == [] and client.state == "stopped"


def test_interpreter_exit_releases_the_shared_study_without_tracker_warnings():
    code = (
        "import numpy as np\n"
        "from liverview.engine.client import EngineClient\n"
        "from liverview.study.case import Study\n"
        "from liverview.study.volume import Volume\n"
        "vols = {p: Volume(np.zeros((4, 16, 16), np.float32), np.eye(4)) for p in 'PAVD'}\n"
        "c = EngineClient()\n"
        "s = c.share_study(Study(volumes=vols))\n"
        "c.send_study(1, s)\n"
        "print(' '.join(s.names))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    names = done.stdout.split()
    assert len(names) == 4 and _segments(names) == []
    assert "leaked" not in done.stderr and "resource_tracker" not in done.stderr, done.stderr


def test_local_engine_gives_the_same_payloads(tiny_bundle, synthetic_study):
    from liverview.engine.local import LocalEngine

    local = LocalEngine(bundle_dir=str(tiny_bundle))
    rec = Recorder(local)
    local.start()
    assert local.ready and local.card["load_seconds"] >= 0 and local.engine is not None
    study = synthetic_study(phases=("P", "A", "V"))
    local.send_study(7, study)
    case = Case(study)
    for p, vol in study.volumes.items():
        case.set_picks(p, [vol.position_of(k) for k in (5, 6, 7)])
    kind, error = rec.job_end(local.analyze(case.to_dict()))
    assert kind == "job_failed" and isinstance(error, MissingPhasesError)
    kind, payload = rec.job_end(local.analyze(case.to_dict(), allow_missing=True))
    assert kind == "job_done" and set(payload) == {"findings", "ai_boxes"}
    kind, payload = rec.job_end(local.auto_pick())
    assert (kind == "job_done" and set(payload) == {"picks", "extent", "reference"}) or isinstance(payload, AutoPickError)
    local.stop()
    assert local.state == "stopped"


def test_local_engine_without_a_bundle_says_why(tmp_path):
    from liverview.engine.local import LocalEngine

    local = LocalEngine(bundle_dir=str(tmp_path / "absent"))
    rec = Recorder(local)
    local.start()
    assert local.state == "no-bundle" and "absent" in local.bundle_error
    kind, error = rec.job_end(local.auto_pick())
    assert kind == "job_failed" and isinstance(error, BundleError)
    local.stop()


@pytest.mark.parametrize("backbone,size", [("resnet18", 64), ("vit", 32)])
def test_our_grad_cam_is_pytorch_grad_cams_exactly(backbone, size):
    gc = pytest.importorskip("pytorch_grad_cam")
    import numpy as np
    import torch

    from liverview.engine.diagnosis import _PredictedClass, grad_cam
    from liverview.engine.networks import build_classifier, cam_reshape_transform, cam_target_layer

    torch.manual_seed(1)
    net = build_classifier(backbone, 2, 4, size, None).float().eval()
    for p in net.parameters():
        p.requires_grad_(False)
    layer, reshape = cam_target_layer(net, backbone), cam_reshape_transform(net, backbone)
    x = torch.rand(3, 4, size, size, generator=torch.Generator().manual_seed(2))

    xa = x.clone().requires_grad_(True)
    ours, logits = grad_cam(net, layer, reshape, xa, [_PredictedClass(0.4) for _ in range(3)])
    cam = gc.GradCAM(model=net, target_layers=[layer], reshape_transform=reshape)
    xb = x.clone().requires_grad_(True)
    theirs = cam(input_tensor=xb, targets=[_PredictedClass(0.4) for _ in range(3)])
    cam.activations_and_grads.release()
    assert np.array_equal(ours, theirs) and torch.equal(logits, cam.outputs.detach()) and torch.equal(xa.grad, xb.grad)
