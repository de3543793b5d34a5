"""Bundles: written and read back and sealed, tampering refused with both hashes, pickles refused unread."""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from liverview.engine.bundle import SEAL, UNSEALED_NOTE, BundleError, load_bundle, seal_manifest, write_bundle
from liverview.engine.networks import build_classifier


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _rewrite(folder: Path, manifest: dict) -> None:
    """Write an edited manifest and seal it, as whoever made a bundle would: the checks under test are the field checks."""
    (folder / "manifest.json").write_text(json.dumps(manifest))
    seal_manifest(folder)


def test_random_bundle_round_trips(random_bundle):
    b = load_bundle(random_bundle)
    assert b.manifest["task"] == "liver-tumor-two-stage"
    assert b.manifest["phase_order"] == ["P", "A", "V", "D"]
    for name, meta in b.manifest["files"].items():
        data = (random_bundle / name).read_bytes()
        assert meta == {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    sd = b.state_dict("stage1")
    assert {v.dtype for v in sd.values()} <= {torch.float16, torch.int64}
    entry = b.model("stage1")
    net = build_classifier(entry["backbone"], 2, 4, entry["input_size"], entry["arch_args"])
    net.load_state_dict(sd)  # strict: every tensor fits the builder's network
    assert b.manifest_sha256 == hashlib.sha256((random_bundle / "manifest.json").read_bytes()).hexdigest()


def test_write_bundle_keeps_float32_and_int_buffers_when_not_half(tmp_path, random_bundle):
    manifest = json.loads((random_bundle / "manifest.json").read_text())
    manifest.pop("files")
    for entry in manifest["models"].values():
        entry.pop("file")
    src = load_bundle(random_bundle)
    weights = {k: {n: t.float() if t.is_floating_point() else t for n, t in src.state_dict(k).items()} for k in manifest["models"]}
    written = write_bundle(tmp_path / "b", manifest, weights, half=False)
    assert written["models"]["stage1"]["file"] == "stage1.safetensors"
    sd = load_bundle(tmp_path / "b").state_dict("stage1")
    assert sd["bn1.num_batches_tracked"].dtype == torch.int64
    assert sd["conv1.weight"].dtype == torch.float32


def test_flipped_byte_is_refused_naming_file_and_both_hashes(tmp_path, random_bundle):
    folder = _copy(random_bundle, tmp_path / "tampered")
    path = folder / "stage1.safetensors"
    data = bytearray(path.read_bytes())
    expected = hashlib.sha256(data).hexdigest()
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    actual = hashlib.sha256(data).hexdigest()
    with pytest.raises(BundleError) as err:
        load_bundle(folder)
    msg = str(err.value)
    assert "stage1.safetensors" in msg and expected in msg and actual in msg


def test_missing_weight_file_is_named(tmp_path, random_bundle):
    folder = _copy(random_bundle, tmp_path / "missing")
    (folder / "benign.safetensors").unlink()
    with pytest.raises(BundleError, match="benign.safetensors"):
        load_bundle(folder)


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_malicious_pickle_is_refused_without_running(tmp_path, random_bundle):
    # Control: unpickling this payload really does create its marker file.
    control = tmp_path / "control-marker"
    pickle.loads(pickle.dumps(_Payload(control))).close()
    assert control.exists()

    marker = tmp_path / "marker"
    folder = _copy(random_bundle, tmp_path / "evil")
    payload = pickle.dumps({"model": _Payload(marker)})
    (folder / "detector.pt").write_bytes(payload)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["models"]["detector"]["file"] = "detector.pt"
    manifest["files"]["detector.pt"] = {"sha256": hashlib.sha256(payload).hexdigest(), "size": len(payload)}
    _rewrite(folder, manifest)
    with pytest.raises(BundleError) as err:
        load_bundle(folder)
    assert "detector.pt" in str(err.value) and "refused" in str(err.value)
    assert not marker.exists()


@pytest.mark.parametrize(
    "edit, field",
    [
        (lambda m: m.pop("windows"), "windows"),
        (lambda m: m.__setitem__("phase_order", ["A", "P", "V", "D"]), "phase_order"),
        (lambda m: m["models"]["stage1"].__setitem__("classes", ["a", "b"]), "models.stage1.classes"),
        (lambda m: m["models"]["detector"].__setitem__("channels", 3), "models.detector.channels"),
        (lambda m: m["files"].__setitem__("../x.safetensors", {"sha256": "0", "size": 1}), "plain file name"),
    ],
)
def test_bad_manifest_fields_are_named(tmp_path, random_bundle, edit, field):
    folder = _copy(random_bundle, tmp_path / "bad")
    manifest = json.loads((folder / "manifest.json").read_text())
    edit(manifest)
    _rewrite(folder, manifest)
    with pytest.raises(BundleError, match=field.replace(".", r"\.")):
        load_bundle(folder)


def test_no_bundle_and_broken_json_are_one_line_errors(tmp_path):
    with pytest.raises(BundleError, match="no model bundle folder"):
        load_bundle(tmp_path / "nowhere")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(tmp_path / "b")


def test_engine_refuses_weights_that_do_not_fit_the_manifest(tmp_path, random_bundle):
    from liverview.engine.analyze import Engine

    folder = _copy(random_bundle, tmp_path / "mismatch")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["models"]["benign"]["backbone"] = "densenet121"
    manifest["models"]["benign"]["arch_args"] = {}
    manifest["models"]["benign"]["cam_target_layer"] = "features.norm5"
    _rewrite(folder, manifest)
    with pytest.raises(BundleError, match=r"benign\.safetensors: weights do not fit the densenet121"):
        Engine(folder)

    manifest["models"]["benign"] = json.loads((random_bundle / "manifest.json").read_text())["models"]["benign"]
    manifest["models"]["benign"]["cam_target_layer"] = "layer9"
    _rewrite(folder, manifest)
    with pytest.raises(BundleError, match=r"models\.benign\.cam_target_layer: 'layer9' is not a module"):
        load_bundle(folder)


def test_a_written_bundle_is_sealed_and_the_seal_is_the_shown_hash(random_bundle):
    b = load_bundle(random_bundle)
    assert b.sealed and b.notes == []
    line = (random_bundle / SEAL).read_text()
    assert line == f"{b.manifest_sha256}  manifest.json\n"  # sha256sum -c reads it
    assert b.describe()["manifest_seal"] == f"{SEAL} verified"


def test_a_bundle_without_a_seal_loads_with_a_note(tmp_path, random_bundle):
    folder = _copy(random_bundle, tmp_path / "unsealed")
    (folder / SEAL).unlink()
    b = load_bundle(folder)
    assert not b.sealed and b.notes == [UNSEALED_NOTE]
    assert b.describe()["manifest_seal"] == UNSEALED_NOTE
    assert b.manifest_sha256 == hashlib.sha256((folder / "manifest.json").read_bytes()).hexdigest()


def test_an_edit_after_sealing_is_refused_naming_both_hashes(tmp_path, random_bundle):
    folder = _copy(random_bundle, tmp_path / "edited")
    sealed = (folder / SEAL).read_text().split()[0]
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["models"]["stage1"]["threshold"] = 0.01
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    actual = hashlib.sha256((folder / "manifest.json").read_bytes()).hexdigest()
    with pytest.raises(BundleError, match="does not match its seal") as err:
        load_bundle(folder)
    assert sealed in str(err.value) and actual in str(err.value)
    (folder / SEAL).write_text("not a digest\n")
    with pytest.raises(BundleError, match=r"manifest\.sha256: expected one line"):
        load_bundle(folder)
